"""Least-privilege Redis ACL users for evoq's workers and controller (``evoq acl``).

The *worker* user can do what ``rq worker`` and evoq's trial runner need — take jobs, move them
through RQ's registries, listen for RQ's commands, append events to the experiments' logs and
keep their heartbeat keys — and nothing else: no access to a controller's lease or fence keys, to
the list of experiments or to other keys; no admin commands (FLUSHALL, CONFIG, KEYS, DEBUG,
SCRIPT, CLIENT LIST, ...). With ``experiment`` set to a name, it may report to that experiment
only. The *controller* user may use its experiments' keys and RQ's, and the few server commands
the controller needs (CLIENT LIST to count live workers, script loading for its lease scripts).

Passwords are left to the operator (``>password`` in the printed lines is a placeholder to
replace; or use ``#<sha256>``).
"""

from __future__ import annotations

from .keys import EXPERIMENTS, check_name

WORKER_COMMANDS = (
    # connection and transactions
    "+ping", "+echo", "+select", "+hello", "+auth", "+client|setname", "+client|getname", "+client|id",
    "+multi", "+exec", "+discard", "+watch", "+unwatch",
    # RQ's keys: queues, job hashes, registries, results, workers, pub/sub commands
    "+@read", "+@write", "+@list", "+@hash", "+@set", "+@sortedset", "+@stream", "+@string",
    "+@keyspace", "+@pubsub", "+@scripting", "+@blocking", "+time",
    # nothing that administers or scans the server, even where a category above includes it
    "-@admin", "-@dangerous", "-script", "-flushall", "-flushdb", "-keys", "-scan", "-config", "-debug",
    "-shutdown", "-migrate", "-restore", "-sort", "-sort_ro", "-eval_ro", "-evalsha_ro",
    "+script|exists", "+evalsha", "+eval",
)  # fmt: skip
"""Command rules of the worker user (rq's own Lua scripts need EVAL/EVALSHA; SCRIPT LOAD is not
needed: redis-py falls back to EVAL... no: rq's Script objects do use SCRIPT LOAD, see below)."""


def worker_keys(experiment: str) -> list[str]:
    """Key patterns of the worker user."""
    tag = "*" if experiment == "*" else check_name(experiment)
    return ["~rq:*", f"~evoq:{{{tag}}}:events", f"~evoq:{{{tag}}}:hb:*", "&rq:*"]


def controller_keys(experiment: str) -> list[str]:
    """Key patterns of the controller user."""
    tag = "*" if experiment == "*" else check_name(experiment)
    return ["~rq:*", f"~evoq:{{{tag}}}:*", f"~{EXPERIMENTS}", "&rq:*"]


CONTROLLER_COMMANDS = (
    "+@all", "-@dangerous", "-@admin",
    "+client|list", "+client|setname", "+client|getname", "+client|id", "+script|load", "+script|exists",
    "-flushall", "-flushdb", "-keys", "-config", "-debug", "-shutdown",
)  # fmt: skip


def acl_rules(experiment: str, queue: str, *, worker_user: str, controller_user: str) -> list[str]:
    """``ACL SETUSER`` lines for the two users (see the module docstring)."""
    del queue  # RQ's keys all live under rq:*, whatever the queue
    worker = ["on", ">CHANGE-ME-worker-password", "resetkeys", "resetchannels", *worker_keys(experiment),
              "-@all", *WORKER_COMMANDS]  # fmt: skip
    controller = ["on", ">CHANGE-ME-controller-password", "resetkeys", "resetchannels",
                  *controller_keys(experiment), "-@all", *CONTROLLER_COMMANDS]  # fmt: skip
    return [
        f"ACL SETUSER {worker_user} {' '.join(worker)}",
        f"ACL SETUSER {controller_user} {' '.join(controller)}",
    ]
