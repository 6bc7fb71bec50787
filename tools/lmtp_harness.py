"""Run stored and lmtpd as real processes on a store, and talk LMTP to
lmtpd with per-recipient replies (smtplib.LMTP reads one reply after DATA
whatever the number of recipients). Shared by the tests, the benchmark
and the kill harness."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
STORED = [sys.executable, "-c", "from store.cli.stored import main; main()"]
LMTPD = [sys.executable, "-c", "from store.cli.lmtpd import main; main()"]


def _env(root: str) -> dict:
    return {**os.environ, "MSGSTORE_ROOT": root}


def start_stored(root: str, timeout: float = 120.0) -> subprocess.Popen:
    proc = subprocess.Popen(STORED, cwd=REPO, env=_env(root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if subprocess.run(STORED + ["-t"], cwd=REPO, env=_env(root),
                          capture_output=True).returncode == 0:
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"stored exited {proc.returncode}: {proc.stderr.read()!r}")
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError("stored not ready in time")


def socket_path(root: str) -> str:
    return os.path.join(root, "run", "lmtp")


def start_lmtpd(root: str, *args: str, wait: bool = True, timeout: float = 120.0,
                new_session: bool = False) -> subprocess.Popen:
    """lmtpd on <root>/run/lmtp; with wait, returned once it answers.
    new_session: in a process group of its own (os.killpg kills it all)."""
    proc = subprocess.Popen(LMTPD + list(args), cwd=REPO, env=_env(root),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=new_session)
    if wait:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                LMTPClient(socket_path(root)).close()
                return proc
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"lmtpd exited {proc.returncode}: {proc.stderr.read()!r}")
            time.sleep(0.05)
        stop(proc)
        raise RuntimeError("lmtpd not listening in time")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(prog: str, root: str, sslport: int | None = None, preexec_fn=None
                  ) -> tuple[subprocess.Popen, int]:
    """imapd or popd on a free loopback port (and, given, with TLS on
    `sslport`), returned once it accepts connections. A port taken by another
    process between our choice and the service's bind: another port (three tries)."""
    for _attempt in range(3):
        port = free_port()
        extra = ["--sslport", str(sslport)] if sslport else []
        proc = subprocess.Popen([sys.executable, "-c",
                                 f"from store.cli.{prog} import main; main()",
                                 "--store-root", root, "--port", str(port), *extra], cwd=REPO,
                                stderr=subprocess.PIPE, preexec_fn=preexec_fn)
        deadline = time.monotonic() + 120  # a loaded machine starts it slowly, never fails it
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", sslport or port), 0.5).close()
                return proc, port
            except OSError:
                time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{prog} did not accept connections within 120 s")
        proc.wait()
    raise RuntimeError(f"{prog} exited at start three times: {proc.stderr.read().decode()[-500:]}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class LMTPClient:
    """One LMTP session. `send` returns (RCPT replies, DATA replies), each
    a (code, text) pair; DATA replies only for accepted recipients."""

    def __init__(self, where: str, port: int | None = None):
        self.conn = smtplib.LMTP(where, port) if port else smtplib.LMTP(where)
        self.conn.ehlo()  # smtplib.LMTP sends LHLO

    def send(self, sender: str, rcpts: list[str], data: bytes
             ) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        c = self.conn
        code, text = c.mail(sender)
        if code != 250:
            return [(code, text.decode())] * len(rcpts), []
        rcpt_replies = []
        for r in rcpts:
            code, text = c.rcpt(r)
            rcpt_replies.append((code, text.decode()))
        accepted = sum(code == 250 for code, _ in rcpt_replies)
        if not accepted:
            c.rset()
            return rcpt_replies, []
        c.putcmd("data")
        code, text = c.getreply()
        if code != 354:
            return rcpt_replies, [(code, text.decode())]
        c.send(data_section(data))
        data_replies = []
        for _ in range(accepted):
            code, text = c.getreply()
            data_replies.append((code, text.decode()))
            if code == 421:
                break
        return rcpt_replies, data_replies

    def close(self) -> None:
        try:
            self.conn.quit()
        except (smtplib.SMTPException, OSError):
            self.conn.close()


def data_section(data: bytes) -> bytes:
    """What a client sends after 354: CRLF line ends, dot-stuffing (RFC
    5321 4.5.2) and the line holding only "."."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if data and not data.endswith(b"\r\n"):  # an empty message is the end line alone
        data += b"\r\n"
    lines = data.split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines) + b".\r\n"
