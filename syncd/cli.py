"""The ``syncd`` command line.

``syncd run`` starts the daemon; ``syncd demo`` runs the whole two-way sync against the
built-in simulators; ``syncd sim <platform>`` serves one simulator for a trial; ``resync``,
``status``, ``integrations`` (list, show, create, pause, resume, delete), ``chats list``,
``messages list`` and ``deadletters`` talk to a running daemon's HTTP API (``--api``, default ``http://localhost:$SYNCD_HTTP_PORT``)
with ``$SYNCD_ADMIN_TOKEN``; ``events send`` signs an app event with
``$SYNCD_APP_WEBHOOK_SECRET`` and posts it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx


def _client(args: argparse.Namespace) -> httpx.Client:
    # SYNCD_ADMIN_TOKEN may list several tokens (rotation); any one of them works.
    token = (args.token or os.environ.get("SYNCD_ADMIN_TOKEN") or "").split(",")[0].strip()
    if not token:
        raise SystemExit("error: set SYNCD_ADMIN_TOKEN or pass --token")
    return httpx.Client(base_url=args.api, headers={"authorization": f"Bearer {token}"}, timeout=30)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise SystemExit(f"error: cannot reach syncd at {client.base_url}: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = {"error": {"code": "bad_answer", "message": response.text[:200]}}
    if response.status_code >= 400:
        error = body.get("error", {})
        details = error.get("details")
        extra = f" {json.dumps(details)}" if details else ""
        raise SystemExit(f"error: {response.status_code} {error.get('code')}: {error.get('message')}{extra}")
    return body


def _status_table(statuses: list[dict[str, Any]]) -> str:
    rows = [("chat", "phase", "pages", "fetched", "new", "updated", "deleted", "error")]
    for s in statuses:
        c = s.get("counts", {})
        rows.append((s.get("externalChatId") or ("(integration)" if s.get("chatId") is None else s["chatId"]),
                     s["phase"], str(c.get("pages", 0)), str(c.get("fetched", 0)), str(c.get("inserted", 0)),
                     str(c.get("updated", 0)), str(c.get("deleted", 0)), (s.get("lastError") or "")[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _wait(client: httpx.Client, integration_id: str, timeout_s: float) -> int:
    """Show progress until no chat is pending/importing; 1 if something ended in error."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = _call(client, "GET", f"/integrations/{integration_id}/status")["status"]
        chats = [s for s in statuses if s.get("chatId")]
        done = sum(1 for s in chats if s["phase"] in ("done", "error", "cancelled"))
        fetched = sum(s.get("counts", {}).get("fetched", 0) for s in chats)
        sys.stderr.write(f"\r  {done}/{len(chats)} chats, {fetched} messages read ")
        sys.stderr.flush()
        busy = any(s["phase"] in ("pending", "importing") for s in statuses)
        if not busy or time.monotonic() > deadline:
            sys.stderr.write("\n")
            print(_status_table(statuses))
            return 1 if any(s["phase"] == "error" for s in statuses) or busy else 0
        time.sleep(1)


def cmd_run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from syncd.config import load_settings
    from syncd.daemon import ConfigError, run, serve
    from syncd.mapping import MappingError

    overrides = {k: v for k, v in {"http_host": args.host, "http_port": args.port,
                                   "mongodb_uri": args.mongodb_uri, "log_level": args.log_level}.items() if v}
    try:
        settings = load_settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            name = "SYNCD_" + "_".join(str(p) for p in error["loc"]).upper()
            print(f"error: {name}: {error['msg']}", file=sys.stderr)
        return 2
    try:
        run(serve(settings))
    except (ConfigError, MappingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from syncd.demo import run_demo

    return asyncio.run(run_demo(messages=args.messages, verbose=args.verbose))


def cmd_resync(args: argparse.Namespace) -> int:
    with _client(args) as client:
        body: dict[str, Any] = {"full": args.full}
        if args.chat:
            body["chatIds"] = args.chat
        answer = _call(client, "POST", f"/integrations/{args.integration_id}/resync", json=body)
        count = len(answer["resync"]["chatIds"])
        print(f"resync queued for {count} chat{'' if count == 1 else 's'} (full={args.full})")
        return _wait(client, args.integration_id, args.timeout) if args.wait else 0


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        answer = _call(client, "GET", f"/integrations/{args.integration_id}/status")
        integration = answer["integration"]
        print(f"{integration['platform']} integration {integration['id']} ({integration['status']})")
        if integration["status"] == "paused":
            print(f"paused since {integration.get('pausedAt')}: {integration.get('statusReason') or 'no reason given'}")
        print(_status_table(answer["status"]))
        full = answer.get("fullSync") or {}
        if full.get("everyS"):
            last = full.get("last") or {}
            state = "running" if full.get("running") else f"last finished {last.get('finishedAt') or 'never'}"
            print(f"full sync every {full['everyS']:g}s, next {full.get('nextAt') or 'not scheduled yet'}; {state}"
                  + (f" ({last.get('chatsDone', 0)}/{last.get('chats', 0)} chats, {last.get('deleted', 0)} deleted, "
                     f"{last.get('updated', 0)} updated)" if last else ""))
        inbox = answer.get("inbox") or {}
        if inbox:
            print("inbox: " + ", ".join(f"{k}={v}" for k, v in sorted(inbox.items())))
        dead = answer.get("deadLetters") or {}
        if any(dead.values()):
            print("dead letters: " + ", ".join(f"{k}={v}" for k, v in sorted(dead.items()))
                  + f" (syncd deadletters list --integration {integration['id']})")
        return 0


def cmd_integrations(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "list":
            params = {k: v for k, v in {"customerId": args.customer, "platform": args.platform}.items() if v}
            found = _call(client, "GET", "/integrations", params=params)["integrations"]
            if not found:
                print("no integrations")
            else:
                print(f"{'id':<32}  {'platform':<8} {'customer':<20} {'status':<8} name")
            for i in found:
                print(f"{i['id']}  {i['platform']:<8} {i['customerId']:<20} {i['status']:<8} {i.get('name') or ''}")
        elif args.action == "show":
            print(json.dumps(_call(client, "GET", f"/integrations/{args.id}")["integration"], indent=2))
        elif args.action == "delete":
            return _delete(client, args)
        elif args.action in ("pause", "resume"):
            body = {"reason": args.reason} if args.action == "pause" and args.reason else None
            integration = _call(client, "POST", f"/integrations/{args.id}/{args.action}", json=body)["integration"]
            reason = f": {integration['statusReason']}" if integration.get("statusReason") else ""
            print(f"{args.id} is {integration['status']}{reason}")
        elif args.action == "create":
            try:
                credentials = json.loads(args.credentials)
                settings = json.loads(args.settings) if args.settings else None
            except ValueError as exc:
                raise SystemExit(f"error: --credentials/--settings must be JSON: {exc}") from None
            body = {"platform": args.platform, "customerId": args.customer, "name": args.name,
                    "credentials": credentials, "settings": settings}
            integration = _call(client, "POST", "/integrations", json=body)["integration"]
            print(f"created {integration['id']}; webhook URL: {integration['webhookUrl']}")
            if args.wait:
                return _wait(client, integration["id"], args.timeout)
    return 0


def _delete(client: httpx.Client, args: argparse.Namespace) -> int:
    query = "?purge=true" if args.purge else ""
    deleted = _call(client, "DELETE", f"/integrations/{args.id}{query}")["deleted"]
    disconnect = deleted["disconnect"]
    print(f"deleted {args.id}; disconnect at the platform: {disconnect['state']}"
          + (f" ({disconnect['lastError']}; retried in the background)" if disconnect["state"] == "pending" else ""))
    for step in deleted.get("leftAtPlatform") or []:
        print(f"  remove by hand: {step}")
    if deleted.get("purged"):
        print("purged: " + ", ".join(f"{k}={v}" for k, v in deleted["purged"].items()))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from syncd import trial

    try:
        sim, seeded = trial.make(args.platform, seed=not args.no_seed)
        sock = trial.bind(args.host, args.port)
    except trial.TrialError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    print(trial.instructions(args.platform, sim, f"http://{host}:{port}", seeded), flush=True)
    try:
        trial.serve(sim, sock)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("SYNCD_APP_WEBHOOK_SECRET")
    if not secret:
        raise SystemExit("error: set SYNCD_APP_WEBHOOK_SECRET or pass --secret")
    event = {"id": args.id or f"cli-{os.urandom(8).hex()}", "type": f"message.{args.type}",
             "customerId": args.customer, "platform": args.platform, "externalChatId": args.chat,
             "message": {"id": args.message_id or f"cli-msg-{os.urandom(8).hex()}", "text": args.text}}
    body = json.dumps(event).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    with httpx.Client(base_url=args.api, timeout=30) as client:
        answer = _call(client, "POST", "/events", content=body,
                       headers={"content-type": "application/json", "x-syncd-signature": signature})
    print(f"event {answer['eventId']}: {answer['status']}" + (f" ({answer['error']})" if answer.get("error") else ""))
    return 0


def _dead_letter_table(letters: list[dict[str, Any]]) -> str:
    if not letters:
        return "no dead letters"
    rows = [("id", "kind", "platform", "integration", "what", "attempts", "error")]
    for d in letters:
        what = d.get("eventId") or d.get("deliveryId") or ""
        rows.append((d["id"], d["kind"], d.get("platform") or "", d.get("integrationId") or "", what,
                     str(d.get("attempts", 0)), (d.get("error") or "")[:80]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def cmd_deadletters(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "list":
            params = {k: v for k, v in {"customerId": args.customer, "integrationId": args.integration}.items() if v}
            print(_dead_letter_table(_call(client, "GET", "/deadletters", params=params)["deadLetters"]))
        else:
            for id in args.ids:
                letter = _call(client, "POST", f"/deadletters/{id}/retry")["deadLetter"]
                print(f"{id}: {letter['kind']} queued again")
    return 0


#: The API's largest page of messages (``GET /chats/{id}/messages?limit=``).
MAX_PAGE = 500


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _list_chats(client: httpx.Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    if not (args.integration or args.customer):
        raise SystemExit("error: give --integration or --customer (or both)")
    if args.integration:
        _call(client, "GET", f"/integrations/{args.integration}")  # an unknown one is a 404, not "no chats"
    params = {k: v for k, v in {"customerId": args.customer, "integrationId": args.integration}.items() if v}
    return _call(client, "GET", "/chats", params=params)["chats"]


def cmd_chats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        chats = _list_chats(client, args)
    if args.json:
        print(json.dumps({"chats": chats}, indent=2))
    elif not chats:
        print("no chats")
    else:
        rows = [("id", "platform", "kind", "external id", "last message", "name")]
        rows += [(c["id"], c["platform"], c.get("kind") or "", c["externalChatId"], c.get("lastMessageAt") or "",
                  c.get("name") or "") for c in chats]
        print(_table(rows))
    return 0


def _chat_id(client: httpx.Client, args: argparse.Namespace) -> str:
    """Our id of the chat ``--chat`` names: ours as given, or the platform's among the chats of
    ``--integration`` / ``--customer``."""
    if not (args.integration or args.customer):
        return args.chat
    found = [c for c in _list_chats(client, args) if args.chat in (c["id"], c["externalChatId"])]
    owner = f"integration {args.integration}" if args.integration else f"customer {args.customer}"
    if not found:
        raise SystemExit(f"error: no chat {args.chat!r} among {owner}'s chats (see `syncd chats list`)")
    if len({c["id"] for c in found}) > 1:
        platforms = ", ".join(sorted(c["platform"] for c in found))
        raise SystemExit(f"error: {owner} has several chats {args.chat!r} (on {platforms}); give --integration")
    return found[0]["id"]


def _message_row(m: dict[str, Any]) -> tuple[str, ...]:
    sender = m.get("sender") or {}
    text = " ".join((m.get("text") or m.get("subject") or "").split())
    if m.get("deletedAt"):
        text = "(deleted)"
    return (m.get("sentAt") or "", m["direction"], sender.get("name") or sender.get("externalUserId") or "",
            m.get("externalMessageId") or "", text[:70] + ("..." if len(text) > 70 else ""))


def cmd_messages(args: argparse.Namespace) -> int:
    with _client(args) as client:
        chat_id = _chat_id(client, args)
        messages: list[dict[str, Any]] = []
        cursor, seen = args.cursor, set()
        while True:
            params = {"limit": args.limit, **({"cursor": cursor} if cursor else {})}
            page = _call(client, "GET", f"/chats/{chat_id}/messages", params=params)
            messages += page["messages"]
            cursor = page.get("nextCursor")
            if not (args.all and cursor):
                break
            if cursor in seen:  # a cursor that repeats would page forever
                raise SystemExit(f"error: the API handed out the cursor {cursor!r} twice; stopped")
            seen.add(cursor)
    if args.json:
        print(json.dumps({"messages": messages, "nextCursor": cursor}, indent=2))
        return 0
    if messages:
        print(_table([("sent", "direction", "sender", "external id", "text"), *map(_message_row, messages)]))
    else:
        print("no messages" + (" after this cursor" if args.cursor else ""))
    if cursor:
        print(f"more: --cursor {cursor}")
    return 0


def _page_size(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 1 <= size <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_PAGE} (got {size})")
    return size


def parser() -> argparse.ArgumentParser:
    port = os.environ.get("SYNCD_HTTP_PORT", "8080")
    root = argparse.ArgumentParser(prog="syncd", description="Two-way message sync daemon.")
    sub = root.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon (configured by SYNCD_* environment variables)")
    run.add_argument("--host", help="overrides SYNCD_HTTP_HOST")
    run.add_argument("--port", type=int, help="overrides SYNCD_HTTP_PORT")
    run.add_argument("--mongodb-uri", help="overrides SYNCD_MONGODB_URI")
    run.add_argument("--log-level", help="overrides SYNCD_LOG_LEVEL")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="two-way sync against the built-in simulators (no MongoDB needed)")
    demo.add_argument("--messages", type=int, default=300, help="history messages to seed (default 300)")
    demo.add_argument("--verbose", action="store_true", help="show the daemon's logs")
    demo.set_defaults(func=cmd_demo)

    def client_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--api", default=f"http://localhost:{port}",
                       help="syncd's base URL (default: %(default)s, from $SYNCD_HTTP_PORT)")
        p.add_argument("--token", help="admin token (default $SYNCD_ADMIN_TOKEN)")

    resync = sub.add_parser("resync", help="re-read an integration's history (or some chats)")
    resync.add_argument("integration_id")
    resync.add_argument("--chat", action="append", help="our chat id (repeatable); default: every imported chat")
    resync.add_argument("--full", action="store_true", help="also mark messages gone at the platform as deleted")
    resync.add_argument("--wait", action="store_true", help="show progress until it finishes")
    resync.add_argument("--timeout", type=float, default=3600,
                        help="with --wait: seconds to wait before giving up (default: %(default)s)")
    client_args(resync)
    resync.set_defaults(func=cmd_resync)

    status = sub.add_parser("status", help="an integration's sync status")
    status.add_argument("integration_id")
    client_args(status)
    status.set_defaults(func=cmd_status)

    integrations = sub.add_parser("integrations", help="list, show, create, pause, resume or delete integrations")
    isub = integrations.add_subparsers(dest="action", required=True)
    lst = isub.add_parser("list", help="list integrations, newest first")
    lst.add_argument("--customer", help="only this customer's integrations")
    lst.add_argument("--platform", help="only this platform's integrations (a platform name, lower case)")
    helps = {"show": "show one integration as JSON",
             "delete": "stop its sync, undo its webhooks and subscriptions at the platform, wipe its credentials",
             "pause": "stop its polls, imports, full syncs and deliveries; webhooks and app events wait",
             "resume": "process what waited while paused, and sync again"}
    for name, text in helps.items():
        p = isub.add_parser(name, help=text)
        p.add_argument("id", help="the integration id")
    isub.choices["delete"].add_argument("--purge", action="store_true",
                                        help="also remove its chats, messages, user mappings and sync status")
    isub.choices["pause"].add_argument("--reason", help="why (shown in its status)")
    create = isub.add_parser("create", help="create one (checks the credentials, starts the import)")
    create.add_argument("--platform", required=True, help="the platform name, lower case")
    create.add_argument("--customer", required=True, help="the customer id the integration belongs to")
    create.add_argument("--name", help="a name for people (default: the platform)")
    create.add_argument("--credentials", required=True, help="JSON object")
    create.add_argument("--settings", help="JSON object")
    create.add_argument("--wait", action="store_true", help="show import progress until it finishes")
    create.add_argument("--timeout", type=float, default=3600,
                        help="with --wait: seconds to wait before giving up (default: %(default)s)")
    for p in (lst, create, *[isub.choices[n] for n in helps]):
        client_args(p)
    integrations.set_defaults(func=cmd_integrations)

    sim = sub.add_parser("sim", help="serve one built-in simulator, seeded, for a trial against `syncd run`")
    sim.add_argument("platform", help="the platform whose simulator to run; an unknown one lists those that ship")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    sim.add_argument("--port", type=int, default=8090, help="port to listen on; 0 picks a free one (default: %(default)s)")
    sim.add_argument("--no-seed", action="store_true", help="start empty, without sample chats and messages")
    sim.set_defaults(func=cmd_sim)

    events = sub.add_parser("events", help="post app change events (signed with $SYNCD_APP_WEBHOOK_SECRET)")
    esub = events.add_subparsers(dest="action", required=True)
    send = esub.add_parser("send", help="sign and post one app event to /events")
    send.add_argument("--platform", required=True, help="the integration's platform")
    send.add_argument("--customer", required=True, help="the customer id the integration belongs to")
    send.add_argument("--chat", required=True, help="the external chat id (as the platform names the chat)")
    send.add_argument("--text", required=True, help="the message text")
    send.add_argument("--type", choices=("created", "updated", "deleted"), default="created",
                      help="message.<type> (default: %(default)s)")
    send.add_argument("--id", help="the event id, which is its idempotency key (default: a new one)")
    send.add_argument("--message-id", help="the app's own message id (default: a new one)")
    send.add_argument("--secret", help="default: $SYNCD_APP_WEBHOOK_SECRET")
    send.add_argument("--api", default=f"http://localhost:{port}",
                      help="syncd's base URL (default: %(default)s, from $SYNCD_HTTP_PORT)")
    events.set_defaults(func=cmd_events)

    chats = sub.add_parser("chats", help="the chats syncd stores (imported and seen)")
    csub = chats.add_subparsers(dest="action", required=True)
    clist = csub.add_parser("list", help="list an integration's or a customer's chats, oldest first")
    messages = sub.add_parser("messages", help="the messages syncd stores for a chat")
    msub = messages.add_subparsers(dest="action", required=True)
    mlist = msub.add_parser("list", help="list a chat's messages, newest first, a page at a time")
    mlist.add_argument("--chat", required=True,
                       help="our chat id (as `chats list` shows it); with --integration or --customer, also "
                            "the platform's chat id")
    for p, what in ((clist, "chats"), (mlist, "chat")):
        p.add_argument("--integration", help=f"the integration whose {what} to look in")
        p.add_argument("--customer", help=f"the customer id whose {what} to look in")
        p.add_argument("--json", action="store_true", help="print the API's JSON answer instead of a table")
        client_args(p)
    mlist.add_argument("--limit", type=_page_size, default=50,
                       help=f"messages per page, 1 to {MAX_PAGE} (default: %(default)s)")
    paging = mlist.add_mutually_exclusive_group()
    paging.add_argument("--cursor", help="start after this page (the `more: --cursor ...` of the previous one)")
    paging.add_argument("--all", action="store_true", help="follow every page to the oldest message")
    chats.set_defaults(func=cmd_chats)
    messages.set_defaults(func=cmd_messages)

    dead = sub.add_parser("deadletters", help="app events and webhook deliveries that failed for good")
    dsub = dead.add_subparsers(dest="action", required=True)
    dlist = dsub.add_parser("list", help="list them, newest first, with their errors")
    dlist.add_argument("--customer", help="only this customer's")
    dlist.add_argument("--integration", help="only this integration's")
    retry = dsub.add_parser("retry", help="put them back in their queue, with a fresh attempt budget")
    retry.add_argument("ids", nargs="+", help="dead letter ids, as `deadletters list` shows them")
    for p in (dlist, retry):
        client_args(p)
    dead.set_defaults(func=cmd_deadletters)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
