"""imcheck: inspect a mailbox index, a message's cache data, or the database."""

import datetime as dt
import os
import sys
from typing import Any

import click

from .. import index
from ..db import DATABASES, lmdbfiles
from ..db import verify as dbverify
from ..db.envelope import decode_value
from ..errors import EXIT_UNCORRECTED, CorruptionError, StoreError
from ..layout import canonical
from .common import (
    EXIT_CODES_HELP,
    emit_json,
    entry,
    json_option,
    open_store,
    render_table,
    store_root_option,
    usage,
)

EXAMPLES = """Examples:

\b
  imcheck -m user/joe                 index header and records of joe's INBOX
  imcheck -m user/joe/Sent --json
  imcheck -m user/joe -c 102          cache data of message 102
  imcheck -m user/joe --fetch 102     the message itself, as stored
  imcheck -m user/joe --search 'Subject: invoice'   UIDs whose Subject holds it
  imcheck -m user/joe --search 'acme@example'       UIDs with it in any header field
  imcheck -d folder                   dump the folder database
  imcheck -s                          database statistics

"""


def _iso(ts: int) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


@click.command(epilog=EXAMPLES + EXIT_CODES_HELP)
@store_root_option
@click.option("-m", "mailbox", metavar="MAILBOX", help="Dump this mailbox's index.")
@click.option("-c", "uid", type=int, metavar="UID", help="With -m: the cache data of one message.")
@click.option("--fetch", "fetch_uid", type=click.IntRange(1, 4294967294), metavar="UID",
              help="With -m: write the message's bytes to standard output.")
@click.option("--search", metavar="TEXT",
              help="With -m: the UIDs of the messages whose header holds TEXT ('Field: TEXT' "
                   "for one field; * and ? make it a pattern of the whole value).")
@click.option("-d", "dbname", metavar="DB", help=f"Dump a database ({', '.join(DATABASES)}).")
@click.option("-s", "stats", is_flag=True, help="Print database statistics.")
@json_option
def cli(store_root, mailbox, uid, fetch_uid, search, dbname, stats, as_json) -> int:
    """Inspect index files and the mailbox database."""
    if sum(map(bool, (mailbox, dbname, stats))) != 1:
        raise usage("give exactly one of -m MAILBOX, -d DB, -s")
    if (uid is not None or fetch_uid is not None or search is not None) and not mailbox:
        raise usage("-c, --fetch and --search need -m MAILBOX")
    if sum(x is not None for x in (uid, fetch_uid, search)) > 1:
        raise usage("give one of -c, --fetch, --search")
    if dbname and dbname not in DATABASES:
        raise usage(f"unknown database {dbname!r} (one of {', '.join(DATABASES)})")
    with open_store(store_root, readonly=True) as store:  # a dump writes nothing
        if mailbox and fetch_uid is not None:
            data = store.message(canonical(mailbox), fetch_uid)
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return 0
        if mailbox and search is not None:
            return _search(store, canonical(mailbox), search, as_json)
        if mailbox:
            name = canonical(mailbox)
            with store.lock(name):
                mdir = store.mailbox_dir(name)
                idx = index.read_index(mdir, name)
                return (_cache(mdir, name, idx, uid, as_json) if uid is not None
                        else _mailbox(idx, as_json))
        # read in a child process: a damaged data.mdb can kill its reader
        store.close()
        path = store.layout.mboxlist_dir
        if not lmdbfiles.has_data(path):
            raise StoreError(f"no mailbox database in {path} (run reconstruct -m to build one)")
        if stats:
            return _stats(dbverify.read_in_child(path, lambda db: db.stat()), as_json)
        rows = dbverify.read_in_child(path, lambda db: db.read(
            lambda t: list(t.raw_items(dbname))))
        return _dump(rows, dbname, as_json)


def _search(store, name: str, text: str, as_json: bool) -> int:
    """UIDs whose header holds `text` (in one field with `Field: text`)."""
    import re

    from ..mailbox.expire import HEADER_LIMIT, header_fields
    from ..mailbox.expirerules import header_matches
    m = re.fullmatch(r"([!-9;-~]+):\s*(.+)", text)
    field, want = (m.group(1).lower(), m.group(2)) if m else (None, text)
    reader = store.message_reader(name)
    found = []
    for r in store.read(name).records:
        try:
            fields = header_fields(reader.read(r.uid, min(r.header_size or HEADER_LIMIT,
                                                          HEADER_LIMIT)))
        except FileNotFoundError:
            continue
        values = fields.get(field, []) if field else [v for vs in fields.values() for v in vs]
        if any(header_matches(want, v) for v in values):
            found.append(r.uid)
    if as_json:
        emit_json({"mailbox": name, "uids": found})
    else:
        for u in found:
            click.echo(u)
    return 0


def _mailbox(idx: index.Index, as_json: bool) -> int:
    h = idx.header
    header = {"name": h.name, "uniqueid": h.unique_id.hex(), "uidvalidity": h.uidvalidity,
              "uidnext": h.uidnext, "exists": h.exists, "bytes": h.total_bytes,
              "highestmodseq": h.highest_modseq, "quotaroot": h.quotaroot, "acl": h.acl,
              "last_update": h.last_update}
    records: list[dict[str, Any]] = [{"uid": r.uid, "size": r.size, "flags": index.flags_to_names(r.flags),
                "internaldate": r.internaldate, "sentdate": r.sentdate,
                "header_size": r.header_size, "modseq": r.modseq, "guid": r.guid.hex()}
               for r in idx.records]
    problems = [str(p) for p in idx.problems]
    if as_json:
        emit_json({"header": header, "records": records, "problems": problems})
    else:
        for k, v in header.items():
            click.echo(f"{k}: {v}")
        render_table(f"Records of {h.name}", ["uid", "internal date", "sent date", "size",
                                              "header", "flags", "guid"],
                     [(r["uid"], _iso(r["internaldate"]), _iso(r["sentdate"]), r["size"],
                       r["header_size"], " ".join(r["flags"]), r["guid"]) for r in records])
        for p in problems:
            click.echo(p, err=True)
    return EXIT_UNCORRECTED if problems else 0


def _cache(mdir: str, name: str, idx: index.Index, uid: int, as_json: bool) -> int:
    rec = next((r for r in idx.records if r.uid == uid), None)
    if rec is None:
        raise click.UsageError(f"no message with UID {uid} in {name}")
    data = index.read_cache_file(mdir, name)
    fields = index.read_cache_entry(data, rec, name, os.path.join(mdir, index.CACHE_FILE))
    out = {k: _text(v) for k, v in fields.items()}
    if as_json:
        emit_json({"uid": uid, "cache": out})
    else:
        for k, v in out.items():
            click.echo(f"{k}: {v}")
    return 0


def _dump(raw_rows: list[tuple[bytes, bytes]], dbname: str, as_json: bool) -> int:
    rows, bad = [], 0
    for key, raw in raw_rows:
        try:
            value = decode_value(dbname, key, raw)
        except CorruptionError as e:
            value, bad = {"CORRUPT": str(e)}, bad + 1
        rows.append((key.decode(errors="backslashreplace"), value))
    if as_json:
        emit_json([{"key": k, "value": v} for k, v in rows])
    else:
        import json
        render_table(f"Database {dbname}", ["key", "value"],
                     [(k, json.dumps(v, sort_keys=True, ensure_ascii=False)) for k, v in rows])
    return EXIT_UNCORRECTED if bad else 0


def _stats(st: dict, as_json: bool) -> int:
    if as_json:
        emit_json(st)
        return 0
    for k in ("path", "file_bytes", "map_size", "last_txnid", "readers", "max_readers"):
        click.echo(f"{k}: {st[k]}")
    render_table("Databases", ["database", "entries", "depth", "pages"],
                 [(n, s["entries"], s["depth"], s["pages"]) for n, s in st["databases"].items()])
    return 0


main = entry(cli, "imcheck")
