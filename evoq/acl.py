"""Least-privilege Redis ACL users for evoq's workers and controller (``evoq acl``).

The *worker* user can do what ``rq worker`` and evoq's trial runner need and nothing else:

* on RQ's keys (``rq:*``) and channels (``rq:*``: the workers' command channels), the data
  commands of the read, write, list, hash, set, sorted-set, stream, string, keyspace, pub/sub,
  scripting and blocking categories — RQ's queues, job hashes, registries, results and its own
  Lua scripts;
* on an experiment's log (``evoq:{NAME}:events``) only XADD and XRANGE/XREVRANGE (append its
  outcomes, read the creation record), and on the heartbeat keys (``evoq:{NAME}:hb:*``) only SET
  and DEL — through ACL selectors, so a worker cannot delete or rewrite a log;
* nothing else: no controller lease or fence keys, no list of experiments, no other key, and no
  server command (FLUSHALL, CONFIG, KEYS, SCAN, DEBUG, SCRIPT, INFO, CLIENT LIST, ...). RQ copes
  with the last two (it then assumes an older server and dequeues with BLPOP, which evoq's
  liveness check allows for).

With an experiment name, the worker may report to that experiment only (``*``: any). The
*controller* user may use its experiments' keys (``evoq:{NAME}:*``), the experiment index, the
queues' lists of controllers (``evoq:queue:*``, to share a queue's workers fairly) and RQ's keys, publish RQ's stop-job commands, list clients (to count live workers) and load its
Lua scripts; no admin or dangerous command else.

Passwords are left to the operator: replace ``>CHANGE-ME-...`` in the printed lines (or use
``#<sha256 hex>``).
"""

from __future__ import annotations

from .keys import EXPERIMENTS, check_name

WORKER_COMMANDS = (
    "+@read", "+@write", "+@list", "+@hash", "+@set", "+@sortedset", "+@stream", "+@string",
    "+@keyspace", "+@pubsub", "+@scripting", "+@blocking", "+@transaction", "+@connection",
    "-@admin", "-@dangerous", "-script", "-sort", "-sort_ro", "-scan", "-keys", "-migrate", "-restore",
    "+evalsha", "+eval", "+script|exists", "+client|setname", "+client|getname", "+client|id",
)  # fmt: skip
"""Command rules of the worker user on RQ's keys."""

CONTROLLER_COMMANDS = (
    "+@all", "-@dangerous", "-@admin",
    "+client|list", "+client|setname", "+client|getname", "+client|id", "+script|load", "+script|exists",
)  # fmt: skip
"""Command rules of the controller user."""


def _tag(experiment: str) -> str:
    return "*" if experiment == "*" else check_name(experiment)


def worker_rules(experiment: str) -> list[str]:
    """The ACL rules (after the password) of the worker user."""
    tag = _tag(experiment)
    return [
        "resetkeys", "resetchannels", "-@all", "~rq:*", "&rq:*", *WORKER_COMMANDS,
        f"(~evoq:{{{tag}}}:events +xadd +xrange +xrevrange)",
        f"(~evoq:{{{tag}}}:hb:* +set +del)",
    ]  # fmt: skip


def controller_rules(experiment: str) -> list[str]:
    """The ACL rules (after the password) of the controller user."""
    tag = _tag(experiment)
    return [
        "resetkeys", "resetchannels", "-@all", "~rq:*", f"~evoq:{{{tag}}}:*", f"~{EXPERIMENTS}", "~evoq:queue:*", "&rq:*",
        *CONTROLLER_COMMANDS,
    ]  # fmt: skip


def acl_rules(experiment: str, *, worker_user: str, controller_user: str) -> list[str]:
    """``ACL SETUSER`` lines for the two users, ready for ``redis-cli`` (selectors quoted)."""

    def line(user: str, password: str, rules: list[str]) -> str:
        args = [f'"{r}"' if " " in r else r for r in rules]
        return " ".join(["ACL SETUSER", user, "on", password, *args])

    return [
        line(worker_user, ">CHANGE-ME-worker-password", worker_rules(experiment)),
        line(controller_user, ">CHANGE-ME-controller-password", controller_rules(experiment)),
    ]
