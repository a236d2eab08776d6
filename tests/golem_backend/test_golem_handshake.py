"""The version handshake, through the exe-unit harness (yapapi's real ServiceRunner, the real
``provider.serve versions`` and daemon), and the parsing of a hostile provider's report."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from bot.cogs.admin._status import status_embed
from bot.core.metrics import BotMetrics
from golem_backend.fallback import FallbackBackend
from golem_backend.golem import layout
from golem_backend.golem.handshake import (
    OLD_IMAGE,
    REPORT_LIMIT,
    RuntimeVersions,
    VersionMismatch,
    check_versions,
    own_versions,
    parse_report,
)
from golem_backend.golem.pool import MISMATCHES_TO_HALT
from golem_backend.golem.protocol import ProtocolError
from golem_backend.golem.status import VERSION_MISMATCH_STATE
from golem_backend.local.backend import LocalBackend
from provider.results import Prediction
from provider.versions import locked_versions
from tests.golem_backend.harness import FaultPlan
from tests.golem_backend.harness.helpers import (
    golem_settings,
    install_model,
    make_backend,
    wait_running,
    wait_until,
)

VERSIONS_CMD = "provider.serve versions"


def report(**libraries: str) -> bytes:
    """This bot's own report with some libraries changed (a VM built from another lock)."""
    ours = own_versions()
    changed = {**ours.libraries, **libraries}
    runtime = {"libraries": changed, "extractors": ours.extractors}
    return json.dumps({"ok": True, "version": 1, "runtime": runtime}).encode()


def uploads_to_providers(runtime) -> list[str]:  # type: ignore[no-untyped-def]
    """Every file any provider was sent (model, heads, images)."""
    return [
        command["transfer"]["to"]
        for activity in runtime.activities
        for script in activity.scripts
        for command in script
        if "transfer" in command and command["transfer"]["to"].startswith("container:")
    ]


def test_the_report_is_this_environment_and_the_lock():
    ours = own_versions()
    assert ours.libraries == locked_versions()  # make setup installed the lock
    assert ours.extractors["cnn"] and set(ours.libraries) >= {"numpy", "scikit-learn", "pillow"}
    assert parse_report(report()) == ours
    check_versions(parse_report(report()))  # the same versions pass


def test_a_mismatch_names_both_versions_and_the_fix():
    theirs = parse_report(report(**{"scikit-learn": "1.5.2", "numpy": "1.26.4"}))
    with pytest.raises(VersionMismatch) as caught:
        check_versions(theirs)
    message = str(caught.value)
    here = own_versions().libraries
    assert f"scikit-learn 1.5.2 on the provider, {here['scikit-learn']} here" in message
    assert f"numpy 1.26.4 on the provider, {here['numpy']} here" in message
    assert "make image" in message and "GOLEM_IMAGE_HASH" in message
    off_lock = RuntimeVersions({**here, "numpy": "1.0"}, own_versions().extractors)
    with pytest.raises(VersionMismatch, match="not the lock's") as caught:  # the bot is off
        check_versions(parse_report(report()), off_lock)
    assert "numpy " + here["numpy"] + " on the provider, 1.0 here" in str(caught.value)
    extractor = RuntimeVersions(here, {**own_versions().extractors, "cnn": "lite0-old"})
    with pytest.raises(VersionMismatch, match="extractor cnn lite0-old on the provider"):
        check_versions(extractor)


@pytest.mark.parametrize(
    "hostile",
    [
        None,
        b"",
        b"x" * REPORT_LIMIT,  # too large
        b'{"ok": true, "version": 1}',  # no runtime
        b'{"ok": true, "version": 1, "runtime": {"libraries": [], "extractors": {}}}',
        json.dumps(
            {
                "ok": True,
                "version": 1,
                "runtime": {
                    "libraries": {"a": "1"} | {f"p{i}": "1" for i in range(99)},
                    "extractors": {"cnn": "1"},
                },
            }
        ).encode(),  # too many entries
        json.dumps(
            {
                "ok": True,
                "version": 1,
                "runtime": {"libraries": {"numpy\n<@everyone>": "1"}, "extractors": {"cnn": "1"}},
            }
        ).encode(),  # a name that is no name
        json.dumps(
            {
                "ok": True,
                "version": 1,
                "runtime": {
                    "libraries": {"numpy": "[click](http://x)"},
                    "extractors": {"cnn": "1"},
                },
            }
        ).encode(),  # a version that is no version
        json.dumps(
            {
                "ok": True,
                "version": 1,
                "runtime": {"libraries": {"numpy": 2}, "extractors": {"cnn": "1"}},
            }
        ).encode(),
        b'{"ok": true, "version": 1, "runtime": {"libraries": {"numpy": "1"}, "extractors": {"cnn": NaN}}}',  # noqa: E501
    ],
)
def test_a_hostile_report_is_refused_without_echoing_it(hostile):
    with pytest.raises(ProtocolError) as caught:
        parse_report(hostile)
    text = str(caught.value)
    assert "@everyone" not in text and "http" not in text and len(text) < 200


async def test_matching_versions_start_the_instance(tmp_path, tiny_model, sample_images):
    settings = golem_settings(tmp_path)
    install_model(tiny_model.path, settings)
    backend, runtime = make_backend(settings)
    await backend.start()
    try:
        await wait_running(backend, 1)
        (outcome,) = await backend.classify([sample_images[0]])
        assert isinstance(outcome, Prediction)
        status = await backend.status()
        assert status.version_mismatch == "" and status.ready
        activity = runtime.activities[0]
        handshake, prepare = activity.scripts[1], activity.scripts[2]
        assert [next(iter(c)) for c in handshake] == ["run", "transfer"]
        assert list(handshake[0]["run"]["args"][:2]) == ["-m", "provider.serve"]
        assert handshake[0]["run"]["args"][2] == "versions"
        assert prepare[0]["transfer"]["to"] == f"container:{layout.MODEL_PATH}"  # then the model
    finally:
        await backend.stop()


async def test_a_mismatch_retires_instances_uploads_nothing_and_the_fallback_answers(
    tmp_path, tiny_model, sample_images, caplog
):
    caplog.set_level(logging.INFO)
    settings = golem_settings(tmp_path, golem_fallback="local", local_workers=1)
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    faults.add("reply", match=VERSIONS_CMD, reply=report(**{"scikit-learn": "1.5.2"}), times=99)
    golem, runtime = make_backend(settings, faults)
    backend = FallbackBackend(lambda: golem, LocalBackend(settings), reconnect_s=0.2)
    await backend.start()
    try:
        await wait_until(lambda: backend._golem is not None, 60, "Golem connected")
        pool = golem._dispatcher.pool
        await wait_until(lambda: pool.halted, 60, "the pool to stop starting instances")
        (outcome,) = await backend.classify([sample_images[0]])
        assert isinstance(outcome, Prediction)
        status = await backend.status()
        assert status.answered_by == "local"
        here = own_versions().libraries["scikit-learn"]
        assert f"scikit-learn 1.5.2 on the provider, {here} here" in status.version_mismatch
        assert "Rebuild the VM image from the lock" in status.version_mismatch
        mismatched = [i for i in status.instances if i.state == VERSION_MISMATCH_STATE]
        assert len(mismatched) == MISMATCHES_TO_HALT
        assert "no more instances are started" in status.detail
        assert uploads_to_providers(runtime) == [], "something was uploaded to a provider"
        assert len(runtime.activities) == MISMATCHES_TO_HALT  # and no more were started
        retired = [r for r in caplog.records if "retired: The Golem VM image" in r.getMessage()]
        assert len(retired) == MISMATCHES_TO_HALT and retired[0].levelno == logging.ERROR

        embed = status_embed(status, uptime_s=1.0, watched=0, latency_ms=1.0)  # /status
        [field] = [f for f in embed.fields if f.name == "Golem version mismatch"]
        assert field.value == status.version_mismatch

        metrics = BotMetrics()  # the operators' metric: the instance-state gauge
        metrics.update_from(SimpleNamespace(latency=0.05, guilds=[]), status)  # type: ignore[arg-type]
        scraped = metrics.render().decode()
        assert f'state="{VERSION_MISMATCH_STATE}"}} {float(MISMATCHES_TO_HALT)}' in scraped
    finally:
        await backend.stop()
    assert runtime.processes() == []


async def test_an_image_older_than_the_handshake_is_a_mismatch(tmp_path, tiny_model):
    settings = golem_settings(tmp_path)
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    faults.add("old", match=VERSIONS_CMD, times=99)
    backend, runtime = make_backend(settings, faults)
    await backend.start()
    try:
        pool = backend._dispatcher.pool
        await wait_until(lambda: pool.halted, 60, "the pool to stop starting instances")
        status = await backend.status()
        assert status.version_mismatch == OLD_IMAGE
        assert "predates the version handshake" in status.version_mismatch
        assert not status.ready and not backend.serving
        assert uploads_to_providers(runtime) == []
        assert [kind for kind, _, _ in faults.fired] == ["old"] * MISMATCHES_TO_HALT
    finally:
        await backend.stop()


async def test_one_lying_provider_does_not_stop_golem(tmp_path, tiny_model, sample_images):
    """A single provider reporting other versions is replaced; the next one serves."""
    settings = golem_settings(tmp_path)
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    faults.add("reply", match=VERSIONS_CMD, reply=report(numpy="0.0.1"), times=1)
    backend, runtime = make_backend(settings, faults)
    await backend.start()
    try:
        await wait_running(backend, 1)
        (outcome,) = await backend.classify([sample_images[0]])
        assert isinstance(outcome, Prediction)
        status = await backend.status()
        assert status.version_mismatch == ""  # cleared once an instance passed
        assert not backend._dispatcher.pool.halted and len(runtime.activities) == 2
    finally:
        await backend.stop()
