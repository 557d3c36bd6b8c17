"""Several OpenAI-compatible servers of one model behind one backend (`--model` with many URLs).

Syntax (docs/backends.md, "Many servers"): `--model` takes

- a comma-separated list: `--model http://gpu1:8000/v1,http://gpu2:8000/v1`, or
- a file of URLs: `--model @endpoints.txt` (one URL per line; blank lines and `#` comments
  ignored). The file is read when the backend opens, so `--resume` with the same
  `@endpoints.txt` may continue on other servers (the run's config records the spec, not
  the URLs).

Every endpoint must answer `GET /v1/models` at start and serve the same model (the same
default model, and the one asked for with `?model=`): an unreachable or mismatched entry
is a one-line error before anything runs. Query options (`?mode=chat&...`) must be the same
on every URL, as must the API path.

Spreading: each request goes to the live endpoint with the fewest requests in flight, at
most `max_concurrency` in flight per endpoint (the backend's thread pool is that times the
number of endpoints). Requests carry their own seed and the payload is serialised once, so
which endpoint answers a request never changes its result (servers of the same model and
build answer a seeded request identically).

Faults (the single-server policy of `selfteach.backends.transport`, per endpoint):

- a failed attempt (any retried fault: refused, reset, timeout, 408/429/5xx, a bad body)
  takes that endpoint out for a cool-down: the server's Retry-After (at most 30 s), else the
  transport's backoff for its consecutive failures (0.5 s doubling, at most 8 s). Back from
  a cool-down it gets one request at a time until one succeeds (a dead server is probed,
  not flooded);
- the failed request moves at once to another live endpoint; such a failover is free
  (it does not use one of the request's `1 + max_retries` attempts) once per endpoint per
  request, so a request makes at most `1 + max_retries + (endpoints - 1)` attempts;
- when no endpoint is live, a request waits for the first to come back (its probe);
  when a request has used all its attempts, the error says so in one line naming the
  last endpoint and cause (exit 2); outputs already written stay, so `--resume` continues.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from selfteach.backends.models import is_server_spec  # noqa: F401  (where model specs are read)
from selfteach.backends.transport import (
    RETRY_AFTER_CAP,
    Aborted,
    Transient,
    Transport,
    backoff,
)
from selfteach.errors import SelfteachError

log = logging.getLogger(__name__)


# ---- the --model spec ----------------------------------------------------------------------
QUERY_KEYS = ("model", "mode", "tokenizer", "api_key_env", "max_concurrency", "system")


def split_query(url: str) -> tuple[str, dict[str, str]]:
    """`http://host:8000/v1?mode=chat&tokenizer=Qwen/Qwen2.5-0.5B-Instruct` -> (url, options):
    constructor options inside the URL, so `--model URL` on the command line can carry them."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SelfteachError(f"server URL {url!r}: expected http(s)://HOST:PORT/v1")
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        choices = ", ".join(QUERY_KEYS)
        raise SelfteachError(f"server URL option {unknown[0]!r}: choose from {choices}")
    return urlunsplit(parts._replace(query="", fragment="")), query


def split_spec(spec: str, option: str = "--model") -> list[str]:
    """The URLs of a server spec: `URL`, `URL,URL,...` or `@FILE` (one URL per line, `#`
    comments). Inside a URL's query a comma splits only before `http(s)://`, so a query
    value may hold commas.
    SelfteachError (one line) for an unreadable file, an empty list or a non-URL entry."""
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise SelfteachError(
                f"{option} {spec}: cannot read the endpoints file ({e.strerror or e})"
            ) from None
        urls = []
        for i, line in enumerate(lines, 1):
            url = line.split("#", 1)[0].strip()
            if url and not url.startswith(("http://", "https://")):
                raise SelfteachError(f"{path}:{i}: {url!r} is not an http(s):// server URL")
            if url:
                urls.append(url)
        if not urls:
            raise SelfteachError(f"{option} {spec}: the endpoints file lists no URL")
    else:
        urls = [u.strip() for u in _split_commas(spec)]
        bad = next((u for u in urls if not u.startswith(("http://", "https://"))), None)
        if bad is not None:
            raise SelfteachError(f"{option} {spec}: entry {bad!r} is not an http(s):// server URL")
    if len(set(urls)) != len(urls):
        dup = next(u for u in urls if urls.count(u) > 1)
        raise SelfteachError(f"{option} {spec}: endpoint {dup} is listed twice")
    return urls


def _split_commas(spec: str) -> list[str]:
    parts: list[str] = []
    for piece in spec.split(","):
        if parts and "?" in parts[-1] and not piece.strip().startswith(("http://", "https://")):
            parts[-1] += "," + piece  # a comma inside a URL's query
        else:
            parts.append(piece)
    return parts


# ---- the pool --------------------------------------------------------------------------------
@dataclass
class Endpoint:
    transport: Transport
    in_flight: int = 0
    failures: int = 0  # consecutive failed attempts; > 0: on probation (one request at a time)
    out_until: float = 0.0  # monotonic time before which it gets no request
    answered: int = 0  # requests it answered (usage record, tests)
    sent: int = 0  # attempts sent to it (ties go to the least used: round robin)

    @property
    def url(self) -> str:
        return self.transport.base_url


class EndpointPool:
    """`Transport`'s interface (`request`, `close`, `timeout`, `max_retries`) over several
    servers; see the module docstring for the policy."""

    def __init__(
        self,
        urls: list[str],
        headers: dict[str, str],
        timeout: float = 120.0,
        max_retries: int = 3,
        per_endpoint: int = 8,
    ):
        paths = {urlsplit(u).path.rstrip("/") for u in urls}
        if len(paths) > 1:
            raise SelfteachError(
                f"--model: the endpoints differ in their API path ({', '.join(sorted(paths))}); "
                "give every server the same path, e.g. /v1"
            )
        # each attempt is made by the pool, so the per-endpoint transports never retry
        self.endpoints = [
            Endpoint(Transport(u, headers, timeout=timeout, max_retries=0)) for u in urls
        ]
        self.timeout, self.max_retries = float(timeout), max_retries
        self.per_endpoint = per_endpoint
        self.width = len(urls)  # the backend's thread pool: per_endpoint x width
        self.base_url = ",".join(urls)
        self._cond = threading.Condition()

    def close(self) -> None:
        for ep in self.endpoints:
            ep.transport.close()

    # ---- start-up check ------------------------------------------------------------------
    def check_same_model(self, path: str, model: str, explicit: bool) -> None:
        """Every endpoint answers `GET path` (/v1/models, retried as any request to one
        server) and serves `model`: lists it when it was asked for by name (`?model=`), else
        has it as its first (default) model. Servers of different models would give
        results that depend on which one answers."""
        for ep in self.endpoints:
            probe = Transport(
                ep.url, ep.transport.headers, timeout=self.timeout, max_retries=self.max_retries
            )
            try:
                ids = [m["id"] for m in probe.request("GET", path, None, _models_check)["data"]]
            finally:
                probe.close()
            if model not in (ids if explicit else ids[:1]):
                served = repr(ids[0]) if ids else "no model"
                first = self.endpoints[0].url
                raise SelfteachError(
                    f"--model: the endpoints serve different models: {first} serves {model!r}, "
                    f"{ep.url} serves {served}"
                )

    # ---- choosing an endpoint ------------------------------------------------------------
    def _capacity(self, ep: Endpoint) -> int:
        return 1 if ep.failures else self.per_endpoint

    def _acquire(self, stop: threading.Event | None, abandoned: Callable[[], Aborted]) -> Endpoint:
        """The live endpoint with the fewest requests in flight and a free slot, the least
        used on ties (blocks until there is one; when all are out, until the first cool-down
        ends)."""
        with self._cond:
            while True:
                if stop is not None and stop.is_set():
                    raise abandoned()
                now = time.monotonic()
                free = [
                    ep
                    for ep in self.endpoints
                    if ep.out_until <= now and ep.in_flight < self._capacity(ep)
                ]
                if free:
                    ep = min(free, key=lambda e: (e.in_flight, e.sent))
                    ep.in_flight, ep.sent = ep.in_flight + 1, ep.sent + 1
                    return ep
                back = [ep.out_until - now for ep in self.endpoints if ep.out_until > now]
                self._cond.wait(timeout=min([*back, 0.5]) if back else 0.5)

    def _release(self, ep: Endpoint, fault: Transient | None, answered: bool) -> None:
        with self._cond:
            ep.in_flight -= 1
            if answered:
                ep.failures, ep.answered = 0, ep.answered + 1
            elif fault is not None:
                ep.failures += 1
                wait = (
                    fault.retry_after
                    if fault.retry_after is not None
                    else backoff(ep.failures, ep.transport._rng)
                )
                ep.out_until = max(ep.out_until, time.monotonic() + min(wait, RETRY_AFTER_CAP))
            self._cond.notify_all()

    def _any_live(self, but: Endpoint) -> bool:
        now = time.monotonic()
        with self._cond:
            return any(ep is not but and ep.out_until <= now for ep in self.endpoints)

    # ---- one request -----------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        payload: dict | None = None,
        check: Callable[[Any], None] | None = None,
        stop: threading.Event | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> Any:
        """As `Transport.request`, over the pool (module docstring: failover and limits)."""
        import json

        body = (
            None if payload is None else json.dumps(payload).encode()
        )  # byte-identical on every endpoint
        attempts, failed, start = self.max_retries + 1, 0, time.monotonic()
        failed_over: set[int] = set()

        def abandoned() -> Aborted:
            return Aborted(
                f"servers {self.base_url}: {method} {path} abandoned: another request failed"
            )

        while True:
            ep = self._acquire(stop, abandoned)
            fault: Transient | None = None
            answered = False
            try:
                answer = ep.transport._attempt(method, path, body, check)
                answered = True
                return answer
            except Transient as e:
                fault = e
            finally:  # a client error (SelfteachError) or Ctrl-C also frees the slot
                self._release(ep, fault, answered)
            if id(ep) not in failed_over and self._any_live(ep):
                failed_over.add(id(ep))
                log.info(
                    "server %s: %s %s failed (%s); sent to another endpoint",
                    ep.url,
                    method,
                    path,
                    fault,
                )
                if on_retry is not None:
                    on_retry()
                continue
            failed += 1
            if failed >= attempts:
                break
            wait = (
                backoff(failed, ep.transport._rng)
                if fault.retry_after is None
                else min(fault.retry_after, RETRY_AFTER_CAP)
            )
            log.info(
                "servers %s: %s %s attempt %d/%d failed (%s at %s); retrying in %.1fs",
                self.base_url,
                method,
                path,
                failed,
                attempts,
                fault,
                ep.url,
                wait,
            )
            if on_retry is not None:
                on_retry()
            if stop is not None and stop.wait(wait):
                raise abandoned()
            if stop is None:
                time.sleep(wait)
        took = time.monotonic() - start
        live = sum(e.out_until <= time.monotonic() for e in self.endpoints)
        hint = "; are they running?" if fault.unreachable else ""
        raise SelfteachError(
            f"servers {self.base_url}: {method} {path} failed after "
            f"{failed + len(failed_over)} attempts in {took:.1f}s ({live} of "
            f"{len(self.endpoints)} endpoints live); last: {ep.url}: {fault}{hint}"
        )


def _models_check(obj: Any) -> None:
    from selfteach.backends.transport import BadResponse

    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list) or not all(
        isinstance(m, dict) and isinstance(m.get("id"), str) for m in data
    ):
        raise BadResponse("/models answered without a 'data' list of models with ids")


def parse_endpoints(spec: str) -> tuple[list[str], dict[str, str]]:
    """(URLs without their query, the shared query options) of a server spec; options must
    be the same on every URL (one model, one way of talking to it)."""
    split = [split_query(u) for u in split_spec(spec)]
    query = split[0][1]
    for url, q in split[1:]:
        if q != query:
            shown = [("?" + urlencode(x)) if x else "no options" for x in (q, query)]
            raise SelfteachError(
                f"--model: endpoint {url} has {shown[0]}, the first has {shown[1]}; "
                "give every URL the same ?options"
            )
    return [url.rstrip("/") for url, _ in split], query


def check_same_model(
    client: Transport | EndpointPool, path: str, model: str, explicit: bool
) -> None:
    """At start: every endpoint of a pool serves `model` (a single server: nothing to check)."""
    if isinstance(client, EndpointPool):
        client.check_same_model(path, model, explicit)


def open_transport(
    spec_urls: list[str],
    headers: dict[str, str],
    timeout: float,
    max_retries: int,
    per_endpoint: int,
) -> Transport | EndpointPool:
    """One server: the plain `Transport` (unchanged behaviour); several: an `EndpointPool`."""
    if len(spec_urls) == 1:
        return Transport(spec_urls[0], headers, timeout=timeout, max_retries=max_retries)
    return EndpointPool(
        spec_urls, headers, timeout=timeout, max_retries=max_retries, per_endpoint=per_endpoint
    )
