#!/usr/bin/env python3
"""config_keys.py SRC -- the configuration reference cannot drift from the code.

Reads the schema tables of common/config.c (the field_t arrays the loader
walks: hub_schema for hub.yaml, node_schema for node.yaml, with their list
sub-schemas) and checks, for each file kind:

  * every schema key is a row of the configuration reference in
    docs/operator-guide.md (between the "config-reference" markers), and
    every row there is a schema key;
  * a row's default column says "required" exactly for required keys, and
    for numbers and strings with a default it names that default; a number's
    row names its bounds as "MIN .. MAX";
  * every schema key appears in the example config/<kind>.yaml, and every
    key there is a schema key.

Keys of list items are written "nodes[].id". Exit 0 when all agree, 1 with
every difference listed otherwise. Needs only python3 (no YAML module).
"""
import os
import re
import sys

ROOTS = {"hub.yaml": "hub_schema", "node.yaml": "node_schema"}


def fail_parse(msg):
    print("config_keys.py: cannot read the schema: " + msg, file=sys.stderr)
    sys.exit(2)


def split_top(text, sep=","):
    """Splits text at sep outside (), {}, [] and string literals."""
    out, depth, cur, i, quote = [], 0, [], 0, None
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == "\\":
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch in "({[":
            depth += 1
            cur.append(ch)
        elif ch in ")}]":
            depth -= 1
            cur.append(ch)
        elif ch == sep and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def c_number(expr):
    """Value of a constant like 1L << 30, 16L << 20, 86400000."""
    e = re.sub(r"(?<=\d)[uUlL]+", "", expr.strip())
    if not re.fullmatch(r"[0-9 ()<>*+\-]+", e):
        fail_parse("not a constant: %r" % expr)
    return int(eval(e, {"__builtins__": {}}))  # digits and operators only (checked above)


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    return re.sub(r"//[^\n]*", " ", src)


def read_schema(src):
    """Returns {kind: {key: info}} from the text of config.c."""
    code = strip_comments(src)
    # Function-like macros that produce fields.
    macros = {}
    for m in re.finditer(r"#define\s+(\w+)\(([^)]*)\)((?:[^\n]*\\\n)*[^\n]*)", code):
        params = [p.strip() for p in m.group(2).split(",")]
        macros[m.group(1)] = (params, m.group(3).replace("\\\n", " "))
    tables = {}
    for m in re.finditer(r"static const field_t (\w+)\[\]\s*=\s*\{(.*?)\n\};", code, re.S):
        tables[m.group(1)] = m.group(2)
    schemas = {}
    for m in re.finditer(r"static const schema_t (\w+)\s*=\s*\{\s*(\w+)\s*,", code):
        schemas[m.group(1)] = m.group(2)
    for root in ROOTS.values():
        if root not in schemas or schemas[root] not in tables:
            fail_parse("no schema %s" % root)

    def fields_of(entry):
        """One table entry -> list of dicts (a macro may yield several)."""
        m = re.match(r"(\w+)\s*\((.*)\)\s*$", entry, re.S)
        if m and m.group(1) in macros:
            params, body = macros[m.group(1)]
            args = split_top(m.group(2))
            for p, a in zip(params, args):
                body = re.sub(r"\b%s\b" % re.escape(p), a, body)
            return [f for part in split_top(body) if part.startswith("{") for f in fields_of(part)]
        if not entry.startswith("{"):
            fail_parse("unexpected table entry %r" % entry[:60])
        inner = entry.strip()[1:-1]
        f = {}
        for item in split_top(inner):
            km = re.match(r"\.(\w+)\s*=\s*(.*)$", item, re.S)
            if km:
                f[km.group(1)] = km.group(2).strip()
        if "key" not in f:
            fail_parse("a field without .key: %r" % entry[:80])
        return [f]

    def walk(table, prefix, out):
        for entry in split_top(tables[table]):
            for f in fields_of(entry):
                key = prefix + f["key"].strip('"')
                info = {
                    "type": f.get("type", ""),
                    "required": f.get("required", "0") not in ("0", ""),
                    "default": None,
                    "min": None,
                    "max": None,
                }
                if info["type"] == "F_INT":
                    info["min"], info["max"] = c_number(f["min"]), c_number(f["max"])
                    info["default"] = str(c_number(f.get("idef", "0")))
                elif "def" in f:
                    info["default"] = f["def"].strip('"')
                out[key] = info
                if "sub" in f:
                    sub = f["sub"].lstrip("&").strip()
                    if sub not in schemas:
                        fail_parse("unknown sub-schema %s" % sub)
                    walk(schemas[sub], key + "[].", out)
        return out

    result = {kind: walk(schemas[root], "", {}) for kind, root in ROOTS.items()}
    # Sanity: the parser found what must be there.
    for kind, must in (("hub.yaml", ("hub.listen", "nodes", "nodes[].id", "log.level")),
                       ("node.yaml", ("node.id", "routes[].to", "batch.window", "http.listen"))):
        for k in must:
            if k not in result[kind]:
                fail_parse("%s: expected key %s not found" % (kind, k))
    return result


def read_reference(path):
    """{kind: {key: [cells]}} from the marked tables of the operator guide."""
    text = open(path, encoding="utf-8").read()
    out = {}
    for m in re.finditer(r"<!-- config-reference (\S+) -->(.*?)<!-- /config-reference -->", text, re.S):
        rows = {}
        for line in m.group(2).splitlines():
            if not line.startswith("|"):
                continue
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            km = re.fullmatch(r"`([^`]+)`", cells[0]) if cells else None
            if not km:
                continue          # header or separator
            if km.group(1) in rows:
                rows[km.group(1)].append("duplicate row")
            rows[km.group(1)] = cells
        out[m.group(1)] = rows
    return out


def read_yaml_keys(path):
    """Key paths of a block-style YAML file ("a.b", "list[].key")."""
    keys = set()
    stack = []                    # (column, path, is_list_item), innermost last
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        # "#key: value", no blank after '#': a key shown commented out, for
        # alternatives that cannot be given together (hub.endpoint / hub.endpoints)
        cm = re.match(r"^(\s*)#(?=[A-Za-z_][A-Za-z0-9_]*\s*:(\s|$))", line)
        if cm:
            line = cm.group(1) + line[cm.end():]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^(\s*)(-\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*:(\s|$)", line)
        if not m:
            continue              # a scalar list item or a continuation line
        dash_col = len(m.group(1))
        key_col = dash_col + len(m.group(2) or "")
        if m.group(2):            # "- key: ...": a new item of the enclosing list
            while stack and (stack[-1][0] > dash_col or (stack[-1][0] == dash_col and stack[-1][2])):
                stack.pop()
            stack.append((dash_col, (stack[-1][1] if stack else "") + "[]", True))
        else:
            while stack and stack[-1][0] >= key_col:
                stack.pop()
        parent = stack[-1][1] if stack else ""
        path_ = parent + "." + m.group(3) if parent else m.group(3)
        keys.add(path_)
        stack.append((key_col, path_, False))
    return keys


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    schema = read_schema(open(os.path.join(src, "common", "config.c"), encoding="utf-8").read())
    guide = os.path.join(src, "docs", "operator-guide.md")
    ref = read_reference(guide)
    problems = []
    for kind, keys in schema.items():
        rows = ref.get(kind)
        if rows is None:
            problems.append("%s: no <!-- config-reference %s --> table in docs/operator-guide.md" % (kind, kind))
            rows = {}
        for k in sorted(set(keys) - set(rows)):
            problems.append("%s: key %s (common/config.c) is not in the operator guide's reference" % (kind, k))
        for k in sorted(set(rows) - set(keys)):
            problems.append("%s: the operator guide documents %s, which common/config.c does not know" % (kind, k))
        for k in sorted(set(keys) & set(rows)):
            info, cells = keys[k], rows[k]
            if "duplicate row" in cells:
                problems.append("%s: %s has two rows in the reference" % (kind, k))
            if len(cells) < 4:
                problems.append("%s: the row of %s needs 4 columns (key, type, default, meaning)" % (kind, k))
                continue
            typ, default = cells[1], cells[2].replace("`", "").strip()
            if info["required"] != (default == "required"):
                problems.append("%s: %s is %s in the code but the reference's default says %r"
                                % (kind, k, "required" if info["required"] else "optional", default))
            if info["default"] is not None and not info["required"]:
                if not re.match(r"^%s\b" % re.escape(info["default"]), default):
                    problems.append("%s: %s defaults to %s in the code, the reference says %r"
                                    % (kind, k, info["default"], default))
            if info["min"] is not None and not re.search(r"(?<!\d)%d \.\. %d(?!\d)" % (info["min"], info["max"]), typ):
                problems.append("%s: %s ranges %d .. %d in the code, the reference's type says %r"
                                % (kind, k, info["min"], info["max"], typ))
        ypath = os.path.join(src, "config", kind)
        ykeys = read_yaml_keys(ypath)
        for k in sorted(set(keys) - ykeys):
            problems.append("%s: key %s (common/config.c) is not shown in config/%s" % (kind, k, kind))
        # keys of the YAML that only group others (hub:, limits:) are not settings
        settings = {k for k in ykeys if k in keys or not any(o.startswith(k + ".") or o.startswith(k + "[].")
                                                           for o in ykeys)}
        for k in sorted(settings - set(keys)):
            problems.append("%s: config/%s shows %s, which common/config.c does not know" % (kind, kind, k))
    for kind in sorted(set(ref) - set(schema)):
        problems.append("the operator guide has a reference table for %s, which is no configuration file" % kind)
    counts = ", ".join("%s %d keys" % (kind, len(keys)) for kind, keys in schema.items())
    if problems:
        for p in problems:
            print("FAIL: " + p)
        print("config_keys.py: %d difference(s) between common/config.c, docs/operator-guide.md and config/ (%s)"
              % (len(problems), counts))
        return 1
    print("config_keys.py: common/config.c, docs/operator-guide.md and config/*.yaml agree (%s)" % counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
