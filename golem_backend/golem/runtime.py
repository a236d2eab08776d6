"""The connection to yagna: start yapapi's ``Golem`` with clear errors, open clusters.

``GolemRuntime`` is what the backend uses in production; the local exe-unit harness
(``tests/golem_backend/harness``) provides a runtime with the same methods that runs the
service's real scripts on this machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import aiohttp
from yapapi import Golem, events
from yapapi.config import ApiConfig
from yapapi.engine import NoPaymentAccountError
from yapapi.payload import Payload, vm
from yapapi.props.com import ComLinear, Counter
from yapapi.strategy import DecreaseScoreForUnconfirmedAgreement

from golem_backend.base import BackendUnavailable
from golem_backend.golem.costs import CostLedger
from golem_backend.golem.market import build_strategy
from golem_backend.golem.pool import ClusterLike
from golem_backend.golem.service import ClassifierService
from golem_backend.settings import BackendSettings

logger = logging.getLogger(__name__)

PayloadFactory = Callable[[BackendSettings], Awaitable[Payload]]


class Runtime(Protocol):
    """What :class:`~golem_backend.golem.backend.GolemBackend` needs from a Golem connection."""

    async def start(self) -> None: ...

    async def open_cluster(
        self, num_instances: int, instance_params: list[dict[str, Any]], expiration: datetime
    ) -> ClusterLike: ...

    async def close(self, timeout_s: float = 60.0) -> None: ...

    async def reopen(self, budget_glm: float, timeout_s: float) -> None:
        """Reconnect with a payment allocation of ``budget_glm`` (after a budget stop)."""
        ...

    @property
    def ledger(self) -> CostLedger: ...

    @property
    def connected(self) -> bool:
        """Connected to yagna (False before start, after close)."""
        ...


async def build_payload(settings: BackendSettings) -> Payload:
    """The VM image from settings (looked up over the network: never called by tests)."""
    return await vm.repo(
        image_hash=settings.golem_image_hash,
        image_url=settings.golem_image_url,
        min_mem_gib=settings.golem_min_mem_gib,
        min_storage_gib=settings.golem_min_storage_gib,
        min_cpu_threads=settings.golem_min_cpu_threads,
    )


class GolemRuntime:
    """yapapi's :class:`~yapapi.Golem` with bounded start-up and GLM accounting."""

    def __init__(
        self, settings: BackendSettings, payload_factory: PayloadFactory = build_payload
    ) -> None:
        self._settings = settings
        self._payload_factory = payload_factory
        self._golem: Golem | None = None
        self._payload: Payload | None = None
        self._ledger = CostLedger(time.monotonic)  # GLM accepted per agreement
        self._appkey = ""  # YAGNA_APPKEY, or the key read from YAGNA_APPKEY_FILE at start

    @property
    def ledger(self) -> CostLedger:
        return self._ledger

    @property
    def connected(self) -> bool:
        return self._golem is not None

    async def start(self) -> None:
        s = self._settings
        self._appkey = read_appkey(s)
        if not (s.golem_image_hash or s.golem_image_url):
            raise BackendUnavailable(
                "GOLEM_IMAGE_HASH is not set: build and push the classifier image "
                "(`make image`, see docs/golem.md) and put its hash in .env."
            )
        if s.golem_image_url and not s.golem_image_hash:
            raise BackendUnavailable(
                "GOLEM_IMAGE_URL also needs GOLEM_IMAGE_HASH (the sha3-224 of the .gvmi file), "
                "which providers use to verify the download."
            )
        try:
            async with asyncio.timeout(s.golem_start_timeout_s):
                await self._probe_yagna()
                await self._start_golem()
                self._payload = await self._resolve_payload()
        except TimeoutError:
            await self.close()
            raise BackendUnavailable(
                f"yagna at {s.yagna_api_url} did not get Golem ready within "
                f"{s.golem_start_timeout_s:.0f} s; check the `yagna service run` log."
            ) from None
        except BackendUnavailable:
            await self.close()
            raise

    async def _probe_yagna(self) -> None:
        s = self._settings
        headers = {"Authorization": f"Bearer {self._appkey}"}
        url = f"{s.yagna_api_url.rstrip('/')}/me"
        try:
            timeout = aiohttp.ClientTimeout(total=min(10.0, s.golem_start_timeout_s))
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers=headers) as resp,
            ):
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            hint = (
                "start it with `yagna service run`"
                if shutil.which("yagna")
                else "install it (`pip install golem-node` provides `yagna`), "
                "start it with `yagna service run`"
            )
            raise BackendUnavailable(
                f"yagna is not reachable at {s.yagna_api_url} ({type(exc).__name__}): {hint} "
                "and set YAGNA_API_URL and YAGNA_APPKEY."
            ) from None
        if status in (401, 403):
            raise BackendUnavailable(
                f"yagna at {s.yagna_api_url} rejected YAGNA_APPKEY: create one with "
                "`yagna app-key create requestor` and set YAGNA_APPKEY."
            )
        if status != 200:
            raise BackendUnavailable(f"yagna at {s.yagna_api_url} answered HTTP {status} to /me.")

    async def _start_golem(self, budget_glm: float | None = None) -> None:
        s = self._settings
        golem = Golem(
            budget=s.golem_budget_glm if budget_glm is None else budget_glm,
            subnet_tag=s.golem_subnet,
            payment_driver=s.golem_payment_driver,
            payment_network=s.golem_payment_network,
            event_consumer=self._on_event,
            strategy=DecreaseScoreForUnconfirmedAgreement(build_strategy(s), 0.5),
            api_config=ApiConfig(app_key=self._appkey, api_url=s.yagna_api_url.rstrip("/")),
        )
        self._golem = golem
        platform = f"{s.golem_payment_driver}/{s.golem_payment_network}"
        try:
            await golem.start()
        except NoPaymentAccountError:
            raise BackendUnavailable(
                f"yagna has no payment account for {platform}: run "
                f"`yagna payment init --sender --network {s.golem_payment_network}`."
            ) from None
        except FileNotFoundError:
            raise BackendUnavailable(
                "`gftp` (yagna's file transfer tool) is not on PATH: install the full yagna "
                "requestor package, which ships `gftp` next to `yagna`."
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise BackendUnavailable(
                f"lost the connection to yagna at {s.yagna_api_url} during start-up: {exc}"
            ) from None
        except Exception as exc:
            if type(exc).__module__.startswith("ya_payment"):
                raise BackendUnavailable(
                    f"payment allocation on {platform} failed ({_api_detail(exc)}): check "
                    f"`yagna payment status --network {s.golem_payment_network}`, fund the node "
                    f"(`yagna payment fund --network {s.golem_payment_network}` gives test GLM "
                    f"on hoodi), and make sure yagna can reach the "
                    f"{s.golem_payment_network} network."
                ) from None
            raise BackendUnavailable(f"Golem could not start: {_api_detail(exc)}") from None
        logger.info("connected to yagna at %s (%s)", s.yagna_api_url, platform)

    async def _resolve_payload(self) -> Payload:
        s = self._settings
        try:
            return await self._payload_factory(s)
        except Exception as exc:
            image = s.golem_image_hash or s.golem_image_url
            raise BackendUnavailable(
                f"the VM image {image} could not be resolved ({exc}): push it with "
                "`gvmkit-build --push` and check GOLEM_IMAGE_HASH / GOLEM_IMAGE_URL."
            ) from None

    async def open_cluster(
        self, num_instances: int, instance_params: list[dict[str, Any]], expiration: datetime
    ) -> ClusterLike:
        if self._golem is None or self._payload is None:
            raise BackendUnavailable("The Golem backend is not started.")
        return await self._golem.run_service(
            ClassifierService,
            num_instances=num_instances,
            instance_params=instance_params,
            payload=self._payload,
            expiration=expiration,
        )

    async def reopen(self, budget_glm: float, timeout_s: float) -> None:
        """End this yapapi session (every instance already stopped and paid) and start a new
        one whose payment allocation is ``budget_glm``: yapapi allocates its whole budget
        once at start, so a raised budget needs a new allocation. Raises
        :class:`BackendUnavailable` like :meth:`start`."""
        await self.close(timeout_s / 2)
        try:
            async with asyncio.timeout(max(1.0, timeout_s / 2)):
                await self._start_golem(budget_glm)
        except TimeoutError:
            await self.close()
            raise BackendUnavailable(
                f"yagna did not reopen the Golem connection within {timeout_s / 2:.0f} s."
            ) from None
        except BackendUnavailable:
            await self.close()
            raise

    async def close(self, timeout_s: float = 60.0) -> None:
        """yapapi's shutdown (ends agreements, pays invoices), within ``timeout_s``."""
        golem, self._golem = self._golem, None
        if golem is None:
            return
        try:
            await asyncio.wait_for(golem.stop(), timeout_s)
        except TimeoutError:
            logger.error(
                "yapapi did not shut down within %g s (yagna or a provider hangs); "
                "agreements still open end at their expiration, unaccepted invoices stay unpaid",
                timeout_s,
            )
        except Exception as exc:  # best effort: yagna may be gone already
            logger.warning("yapapi shutdown failed: %s", exc)

    def _on_event(self, event: events.Event) -> None:
        """Track accepted invoices and debit notes (GLM spent per agreement)."""
        if isinstance(event, events.InvoiceAccepted | events.DebitNoteAccepted):
            try:
                amount = Decimal(str(event.amount))
            except ArithmeticError:
                return
            key = event.agreement.id
            try:
                name = event.agreement.details.provider_node_info.name or key[:8]
            except Exception:  # details not fetched: name the agreement instead
                name = key[:8]
            self._ledger.accepted(key, name, amount)
            logger.info("accepted %s GLM for agreement %s (%s)", amount, key[:8], name)
        elif isinstance(event, events.AgreementConfirmed):
            name = event.agreement.details.provider_node_info.name
            hourly = _hourly_price(event.agreement, self._settings.golem_min_cpu_threads)
            if hourly is not None:
                self._ledger.priced(event.agreement.id, hourly)
            logger.info("agreement confirmed with provider %s (%s GLM/h)", name, hourly)
        elif isinstance(event, events.AgreementTerminated):
            self._ledger.ended(event.agreement.id)


def read_appkey(settings: BackendSettings) -> str:
    """The yagna app key: YAGNA_APPKEY, else the first line of YAGNA_APPKEY_FILE (read with a
    size bound; never logged). Raises :class:`BackendUnavailable` saying what to set."""
    if settings.yagna_appkey is not None and settings.yagna_appkey.get_secret_value():
        return settings.yagna_appkey.get_secret_value().strip()
    path = settings.yagna_appkey_file
    if path is None:
        raise BackendUnavailable(
            "YAGNA_APPKEY is not set: create a requestor key with "
            "`yagna app-key create requestor` and put it in .env (or point YAGNA_APPKEY_FILE "
            "at a file holding it)."
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise BackendUnavailable(
            f"YAGNA_APPKEY_FILE {path} cannot be read ({type(exc).__name__}): with compose, "
            "the yagna service's init step writes it at its first start."
        ) from None
    lines = head.decode("utf-8", errors="replace").splitlines()
    key = lines[0].strip() if lines else ""
    if not re.fullmatch(r"[A-Za-z0-9_-]{8,128}", key):
        raise BackendUnavailable(
            f"YAGNA_APPKEY_FILE {path} does not hold an app key on its first line "
            "(`yagna app-key create requestor` prints one)."
        )
    return key


def _hourly_price(agreement: Any, cpu_threads: int) -> float | None:
    """GLM per hour of an agreement's linear prices, every billed thread busy; None if the
    offer's price properties cannot be read."""
    try:
        linear = agreement.details.provider_view.extract(ComLinear)
        prices = linear.price_for
    except Exception:
        return None
    per_second = (
        prices.get(Counter.TIME.value, 0.0) + prices.get(Counter.CPU.value, 0.0) * cpu_threads
    )
    return per_second * 3600


def _api_detail(exc: Exception) -> str:
    """A short, human-readable cause out of a yagna API exception (no secrets, no paths)."""
    body = getattr(exc, "body", None)
    text = ""
    if body:
        try:
            obj = json.loads(body)
            text = str(obj.get("internalError") or obj.get("message") or obj.get("detail") or "")
        except (ValueError, AttributeError):
            text = str(body)
    text = text or str(exc) or type(exc).__name__
    text = re.sub(r",\s*/\S+\.rs:\d+:\d+", "", text)  # drop Rust source locations
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= 240 else text[:237] + "..."
