/* ha.h -- active / standby hubs over PostgreSQL: the advisory lock held on
 * a dedicated session, checked every check_ms, and the hub_instances table
 * (who is there, in which role, since when) for the operator's view.
 *
 * Standby: every check_ms, pg_try_advisory_lock(lock_key) on the lock
 * session (connecting first, with backoff after failures). Active: every
 * check_ms a cheap heartbeat UPDATE on the same session, bounded by the
 * timeout; if it fails or the session is gone the lock may be someone
 * else's -- hub_ha_tick reports HA_LOST and the hub fences itself at once.
 * Not thread-safe; the hub loop calls hub_ha_tick often (every 100 ms).
 */
#ifndef TB_HA_H
#define TB_HA_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

typedef struct hub_ha hub_ha_t;

typedef enum { HA_NONE = 0, HA_ACQUIRED, HA_LOST } ha_event_t;

typedef struct {
    char id[72];
    char role[16];
    char endpoint[256];
    int64_t since_unix_ms;       /* 0 if unknown */
    int64_t heartbeat_ms_ago;
} ha_instance_t;

#define HA_MAX_INSTANCES 16

/* Copies the settings; connects lazily (first tick). NULL if out of memory. */
hub_ha_t *hub_ha_new(const char *conninfo, long lock_key, const char *hub_id, const char *endpoint,
                     long timeout_ms, long check_ms);
/* Closes the lock session (releasing the lock) and frees *self (NULL-safe). */
void hub_ha_destroy(hub_ha_t **self);

/* Does what is due at now (monotonic ms): connect, try the lock, or check
 * it; refresh hub_instances. Returns HA_ACQUIRED when this hub just became
 * active, HA_LOST when an active hub just lost its lock (session lost,
 * check failed or timed out), else HA_NONE. */
ha_event_t hub_ha_tick(hub_ha_t *self, uint64_t now);

/* Gives the lock up (the hub fences itself for another reason): closes the
 * lock session; the next tick reconnects as standby. */
void hub_ha_release(hub_ha_t *self, const char *why);

int hub_ha_active(const hub_ha_t *self);
int64_t hub_ha_since_unix_ms(const hub_ha_t *self);   /* when the current role began */
int hub_ha_lock_pid(const hub_ha_t *self);            /* backend pid of the lock session, 0 if none */
int hub_ha_connected(const hub_ha_t *self);
/* The hubs seen in hub_instances at the last refresh (this one included). */
size_t hub_ha_instances(const hub_ha_t *self, const ha_instance_t **out);

#endif
