"""HTTP for the openai backend: one JSON request, its answer validated, retried on faults.

Retry policy (docs/backends.md, "Server faults"):

- at most `1 + max_retries` attempts per request, each bounded by `timeout` seconds in
  total (connect, send, the answer's headers and body: a server that trickles bytes is
  cut off as surely as one that never answers);
- retried: HTTP 408, 429 and 5xx; timeouts; connections refused, reset or closed early;
  a body that is truncated or not JSON; an answer of the wrong shape (the caller's
  `check` raises `BadResponse`);
- never retried: any other 4xx (or 3xx): one line with the status and the server's message;
- between attempts: 0.5 s doubling per attempt, capped at 8 s, times a random factor in
  [0.5, 1] (jitter: concurrent requests do not retry in lockstep); the server's
  `Retry-After` (seconds or an HTTP date) or `retry-after-ms` replaces it, capped at 30 s.

So a request gives up after at most (1 + max_retries) * timeout + 30 * max_retries
seconds, and the final error says how many attempts were made, the last cause and the URL.
The payload is serialised once, so a retried request is byte-identical to the first one
(same seed: results after retries equal a fault-free run).

The stdlib `http.client` is used rather than the `openai` client so that every attempt,
its deadline and the reading of the body are under our control (the openai client retries
on its own, has no total deadline and tracebacks on a truncated body).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import math
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from selfteach.errors import SelfteachError

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.5  # seconds before the first retry
BACKOFF_CAP = 8.0  # longest exponential wait
RETRY_AFTER_CAP = 30.0  # longest wait a server's Retry-After can ask for
MAX_RETRIES_LIMIT = 100  # --max-retries above this is a typo, not a policy
RETRY_STATUS = frozenset({408, 429})  # plus every 5xx
SNIPPET = 200  # characters of a server's error body quoted in a message


class BadResponse(Exception):
    """The server answered, but not with what the request asks for (retried)."""


class Transient(Exception):
    """One failed attempt that may succeed when repeated."""

    def __init__(self, cause: str, retry_after: float | None = None, unreachable: bool = False):
        super().__init__(cause)
        self.retry_after = retry_after
        self.unreachable = unreachable


class Aborted(SelfteachError):
    """Another request of the same batch failed for good: this one stops retrying."""


class Reply(dict):
    """A JSON object from the server with attribute access (`resp.choices[0].text`), as the
    openai client's types give; a missing field reads as None."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return self.get(key)


def check_timeout(value: float | None, flag: str = "--request-timeout") -> None:
    if value is not None and not (
        isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    ):
        raise SelfteachError(f"{flag} {value!r}: must be a number of seconds > 0")


def check_retries(value: int | None, flag: str = "--max-retries") -> None:
    if value is not None and not (isinstance(value, int) and 0 <= value <= MAX_RETRIES_LIMIT):
        raise SelfteachError(f"{flag} {value!r}: must be an integer from 0 to {MAX_RETRIES_LIMIT}")


def backoff(attempt: int, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based), with jitter."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.0)


def retry_after(headers: Any) -> float | None:
    """The wait a server asks for: `retry-after-ms`, `Retry-After: SECONDS` or an HTTP date."""
    ms = headers.get("retry-after-ms")
    try:
        if ms is not None:
            return max(0.0, float(ms) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def snippet(body: bytes) -> str:
    """The server's error message (`{"error": {"message": ...}}`) or the body's first line."""
    text = body.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("message", obj.get("detail")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            text = str(err)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:SNIPPET] if lines else "(empty body)"


def _left(deadline: float, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"no answer within {timeout:g}s")
    return left


class Transport:
    """JSON over HTTP(S) to one server: a kept-alive connection per thread, and `request`
    which validates and retries (see the module docstring)."""

    def __init__(
        self, base_url: str, headers: dict[str, str], timeout: float = 120.0, max_retries: int = 3
    ):
        check_timeout(timeout, "timeout")
        check_retries(max_retries, "max_retries")
        parts = urlsplit(base_url)
        self.base_url = base_url
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "selfteach",
            **headers,
        }
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._rng = random.Random()  # jitter only: never the global RNG the methods seed

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    # ---- one attempt --------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _once(self, method: str, path: str, body: bytes | None) -> tuple[int, Any, bytes]:
        """One attempt: (status, headers, body), or Transient. A kept-alive connection the
        server closed while idle is reopened once without counting as an attempt."""
        deadline = time.monotonic() + self.timeout
        conn = self._conn()
        for last in (False, True):
            reused = conn.sock is not None
            try:
                conn.timeout = _left(deadline, self.timeout)
                conn.request(method, path, body=body, headers=self.headers)
                sock = conn.sock
                sock.settimeout(_left(deadline, self.timeout))
                resp = conn.getresponse()
                return resp.status, resp.headers, self._read(resp, sock, deadline)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                if reused and not last:
                    continue
                raise Transient(f"connection closed by the server ({_why(e)})") from None
            except TimeoutError:
                conn.close()
                raise Transient(
                    f"timed out (no complete answer within {self.timeout:g}s)"
                ) from None
            except ConnectionRefusedError as e:
                conn.close()
                raise Transient(f"unreachable ({_why(e)})", unreachable=True) from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise Transient(
                    f"connection error ({_why(e)})", unreachable=isinstance(e, socket.gaierror)
                ) from None
        raise AssertionError("unreachable")

    def _read(self, resp: http.client.HTTPResponse, sock: socket.socket, deadline: float) -> bytes:
        """The whole body, within the attempt's deadline; a body shorter than its
        Content-Length is a fault (the connection dropped mid-answer)."""
        chunks = []
        while True:
            sock.settimeout(_left(deadline, self.timeout))
            chunk = resp.read1(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        # read1 leaves a fully read body "open", and the connection would refuse the next request
        resp.close()
        data = b"".join(chunks)
        want = resp.getheader("content-length")
        if want is not None and want.strip().isdigit() and len(data) < int(want):
            raise Transient(f"body truncated ({len(data)} of {int(want)} bytes)")
        return data

    def _attempt(
        self, method: str, path: str, body: bytes | None, check: Callable[[Any], None] | None
    ) -> Any:
        status, headers, data = self._once(method, path, body)
        if status in RETRY_STATUS or status >= 500:
            raise Transient(f"HTTP {status}: {snippet(data)}", retry_after=retry_after(headers))
        if status >= 300:  # the request itself is wrong: repeating it cannot help
            raise SelfteachError(
                f"server {self.base_url}: {method} {path}: HTTP {status}: {snippet(data)} "
                "(a client error: not retried)"
            )
        try:
            obj = json.loads(data, object_hook=Reply)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
            raise Transient(f"answer is not JSON (truncated?): {data[:60]!r}") from None
        if check is not None:
            try:
                check(obj)
            except BadResponse as e:
                raise Transient(f"answer of the wrong shape: {e}") from None
        return obj

    # ---- the retry loop -----------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        payload: dict | None = None,
        check: Callable[[Any], None] | None = None,
        stop: threading.Event | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> Any:
        """The JSON answer to `method path`, validated by `check` (which raises BadResponse),
        retried per the module's policy; SelfteachError once it gives up. `stop` (set when
        another request of the same batch failed) ends the retries early; `on_retry` is
        called before each retry (usage counters)."""
        body = None if payload is None else json.dumps(payload).encode()
        attempts, start = self.max_retries + 1, time.monotonic()
        for attempt in range(1, attempts + 1):
            if stop is not None and stop.is_set():
                raise Aborted(
                    f"server {self.base_url}: {method} {path} abandoned: another request failed"
                )
            try:
                return self._attempt(method, path, body, check)
            except Transient as e:
                fault = e
            if attempt == attempts:
                break
            wait = (
                backoff(attempt, self._rng)
                if fault.retry_after is None
                else min(fault.retry_after, RETRY_AFTER_CAP)
            )
            log.info(
                "server %s: %s %s attempt %d/%d failed (%s); retrying in %.1fs",
                self.base_url,
                method,
                path,
                attempt,
                attempts,
                fault,
                wait,
            )
            if on_retry is not None:
                on_retry()
            if stop is not None and stop.wait(wait):
                raise Aborted(
                    f"server {self.base_url}: {method} {path} abandoned: another request failed"
                )
            if stop is None:
                time.sleep(wait)
        took = time.monotonic() - start
        tried = f"{attempt} attempt{'s' if attempt > 1 else ''} in {took:.1f}s"
        hint = "; is it running?" if fault.unreachable else ""
        raise SelfteachError(
            f"server {self.base_url}: {method} {path} failed after {tried}: {fault}{hint}"
        )


def _why(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())[:SNIPPET]
