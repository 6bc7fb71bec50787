#!/usr/bin/env bash
# Set up (or refresh) the virtual environment, build a demo store from the
# bundled messages in ./demo-store and show its state.
source "$(dirname "$0")/venv.sh"
export MSGSTORE_ROOT="$PWD/demo-store"
rm -rf "$MSGSTORE_ROOT"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
step deliver --create user/demo fixtures/messages/nice_00*
step deliver --create user/demo/Lists fixtures/messages/nice_mailman_message.txt fixtures/messages/nice_mime*
step deliver --create --batch shared/announcements fixtures/messages/nice_cjk_* fixtures/messages/nice_crlf-endings
step python tools/build_store.py --root "$MSGSTORE_ROOT-synthetic" --users 3 --folders 2 --messages 10
rm -rf "$MSGSTORE_ROOT-synthetic"
step mboxutil --set-quota user/demo 10000000
step mboxutil --set-acl user/demo/Lists alice lrs
step mboxutil --set-acl user/demo/Lists anyone p
step mboxutil -l
step mboxutil -q
step imcheck -m user/demo
step imcheck -m user/demo -c 1
step hashdir -a demo
step imcheck -s
step configutil -l
printf '\n\033[1m# Damage the INBOX index (cut it to 60 bytes), then find and repair it\033[0m\n'
truncate -s 60 "$MSGSTORE_ROOT/partition/primary/$(hashdir -a demo)store.idx"
step imcheck -m user/demo || true
step reconstruct -r -n || true
step reconstruct -r || true
step reconstruct -r -n
printf '\n\033[1m# Lose the mailbox database, rebuild it from the spool\033[0m\n'
rm -f "$MSGSTORE_ROOT"/mboxlist/*.mdb
step reconstruct -m || true
step reconstruct -q || true
step mboxutil -l

printf '\n\033[1m# Start stored, take a snapshot, damage the database, restart stored\033[0m\n'
wait_ready() { for _ in $(seq 1 300); do stored -t && return 0; sleep 0.2; done; return 1; }
stored 2>"$MSGSTORE_ROOT/stored-1.err" & pid=$!
wait_ready
step stored -t -v
step imdbverify -s -m
step imdbverify -l
printf '\n\033[1m# Mail in: lmtpd on <root>/run/lmtp, one LMTP session with two recipients\033[0m\n'
lmtpd --workers 1 2>"$MSGSTORE_ROOT/lmtpd.err" & lpid=$!
for _ in $(seq 1 100); do [ -S "$MSGSTORE_ROOT/run/lmtp" ] && break; sleep 0.1; done
step python - "$MSGSTORE_ROOT/run/lmtp" <<'PY'
import sys
sys.path.insert(0, "tools")
from lmtp_harness import LMTPClient
c = LMTPClient(sys.argv[1])
print(c.send("alice@example.org", ["demo@example.com", "nobody@example.com"],
             b"From: alice@example.org\nSubject: over LMTP\n\nHello.\n"))
c.close()
PY
kill -TERM $lpid; wait $lpid
step deliver -f alice@example.org -a demo+Lists@example.com fixtures/messages/nice_002
step grep -E "delivered|refused" "$MSGSTORE_ROOT/log/default"
kill -TERM $pid; wait $pid
step python tools/damage.py "$MSGSTORE_ROOT" db_truncated user/demo
step imdbverify || true
stored 2>"$MSGSTORE_ROOT/stored-2.err" & pid=$!
wait_ready
sleep 1
kill -TERM $pid; wait $pid
printf '\n\033[1m# What stored logged while it recovered\033[0m\n'
cat "$MSGSTORE_ROOT/stored-2.err"
step ls "$MSGSTORE_ROOT/mboxlist/removed"
printf '\n\033[1m# Backup, export and restore: demo'"'"'s mail as a backup stream, as a Maildir, and back as another user\033[0m\n'
rm -rf "$MSGSTORE_ROOT/../demo-backup"; mkdir -p "$MSGSTORE_ROOT/../demo-backup"
step imsbackup -f "$MSGSTORE_ROOT/../demo-backup/demo.msb" user/demo
step imsexport user/demo "$MSGSTORE_ROOT/../demo-backup/Maildir"
step imsrestore -f "$MSGSTORE_ROOT/../demo-backup/demo.msb" --to user/restored user/demo
step imsimport -n "$MSGSTORE_ROOT/../demo-backup/Maildir" user/restored
step mboxutil -l
printf '\nDemo store: %s (log: %s/log/default)\n' "$MSGSTORE_ROOT" "$MSGSTORE_ROOT"
