/* cursors.h -- the hub's persisted delivery cursors: per destination id, the
 * highest hub_seq it has acknowledged contiguously.
 *
 * Kept in memory; cursors_save writes the whole set to one small text file,
 * atomically (temporary file, fsync, rename, fsync of the directory):
 *
 *   tongban-cursors 1
 *   <id> <hub_seq> <crc32c of "<id> <hub_seq>", 8 hex digits>
 *   ...
 *   end <number of entries> <crc32c of every byte before this line, 8 hex>
 *
 * Ids are 1..255 bytes without spaces or control characters, lines sorted
 * by id. A damaged file is refused with an error naming the file and the
 * line; a missing file is an empty set.
 */
#ifndef TB_CURSORS_H
#define TB_CURSORS_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

#define CURSORS_MAX_ID 255u

typedef struct cursors cursors_t;

/* Loads the cursors saved at path (a missing file means none). Returns
 * TB_OK and *out; TB_ERR_PROTO if the file is damaged (err names the file
 * and line); TB_ERR_IO; TB_ERR_NOMEM; TB_ERR_INVALID. */
tb_err_t cursors_open(const char *path, cursors_t **out, char *err, size_t errlen);

/* Returns the cursor of id, 0 if unknown. */
uint64_t cursors_get(const cursors_t *self, const char *id);

/* Sets the cursor of id in memory (any value; saved by cursors_save).
 * Returns TB_OK, TB_ERR_INVALID for a bad id, TB_ERR_NOMEM. */
tb_err_t cursors_set(cursors_t *self, const char *id, uint64_t hub_seq);

/* If anything changed since the last save, writes the file atomically.
 * Returns TB_OK or TB_ERR_IO (err names the file; the old file is intact
 * and the set stays dirty). */
tb_err_t cursors_save(cursors_t *self, char *err, size_t errlen);

/* Returns the smallest cursor of ids[0..n) (unknown ids count as 0), or 0
 * if n is 0 -- the safe bound for journal_gc. */
uint64_t cursors_min(const cursors_t *self, const char *const *ids, size_t n);

/* Returns the number of ids with a cursor. */
size_t cursors_count(const cursors_t *self);

/* Returns 1 if there are unsaved changes, else 0. */
int cursors_dirty(const cursors_t *self);

/* Returns an empty set kept in memory only (no file: cursors_save must not
 * be called; the PostgreSQL store saves it with cursors_each), or NULL. */
cursors_t *cursors_new_memory(void);

/* Calls fn for every cursor, in id order. */
void cursors_each(const cursors_t *self, void (*fn)(void *arg, const char *id, uint64_t hub_seq), void *arg);

/* Clears the dirty flag (after the set was saved elsewhere). */
void cursors_mark_saved(cursors_t *self);

/* Frees *self (without saving) and sets it to NULL (NULL-safe). */
void cursors_destroy(cursors_t **self);

#endif
