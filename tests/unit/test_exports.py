"""Export locations only below the answering system's declared export root (issue 13.7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core.datamap import DataMap
from privops.core.exports import export_problem, path_safe, root_problem
from privops.core.records import ExportReference
from privops.core.vocab import System

REAL = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"
ROOT = "https://exports.allled.example/dsar/orders/"
FILE_ROOT = "file:///srv/exports/orders/"
RID = "REQ-1A2B3C"


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap(REAL)


def with_root(dm: DataMap, system: System, root: str | None) -> DataMap:
    spec = dm.systems[system].model_copy(update={"export_root": root})
    return dm.model_copy(update={"systems": {**dm.systems, system: spec}})


def ref(location: str) -> ExportReference:
    return ExportReference(location=location, record_count=3, checksum="sha256:" + "ab" * 32)


@pytest.mark.parametrize(
    "location",
    [
        pytest.param(f"{ROOT}{RID}.json", id="file-named-by-request"),
        pytest.param(f"{ROOT}{RID}/orders.json", id="directory-named-by-request"),
        pytest.param(f"{ROOT}{RID}/calls/call%201.wav", id="encoded-space-below-request"),
        pytest.param(f"HTTPS://Exports.ALLLED.example/dsar/orders/{RID}.json", id="case-of-host"),
        pytest.param(f"https://exports.allled.example:443/dsar/orders/{RID}.json", id="port-443"),
    ],
)
def test_locations_below_the_root_pass(dm: DataMap, location: str) -> None:
    assert export_problem(dm, System.orders, ref(location), RID) is None


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        # the forged answer of issue 13
        pytest.param("https://evil.example/login", "not below", id="other-host"),
        pytest.param(f"https://root@evil.example/dsar/orders/{RID}.json", "not below", id="user"),
        pytest.param(
            f"https://exports.allled.example@evil.example/dsar/orders/{RID}.json",
            "not below",
            id="root-host-as-userinfo",
        ),
        pytest.param(
            f"https://root@exports.allled.example/dsar/orders/{RID}.json",
            "not below",
            id="userinfo-on-the-right-host",
        ),
        pytest.param(
            f"https://exports.allled.example.evil.net/dsar/orders/{RID}.json",
            "not below",
            id="host-prefix-trick",
        ),
        pytest.param(
            f"https://exports.allled.example/dsar/orders-old/{RID}.json",
            "not below",
            id="path-prefix-trick",
        ),
        pytest.param(
            f"https://exports.allled.example/dsar/crm/{RID}.json",
            "not below",
            id="another-systems-root",
        ),
        pytest.param(f"{ROOT}../crm/{RID}.json", "not below", id="traversal"),
        pytest.param(f"{ROOT}{RID}/../../crm/{RID}.json", "not below", id="traversal-inside"),
        pytest.param(f"{ROOT}%2e%2e/crm/{RID}.json", "not below", id="encoded-traversal"),
        pytest.param(f"{ROOT}%2E%2E/crm/{RID}.json", "not below", id="encoded-traversal-upper"),
        pytest.param(f"{ROOT}.%2e/crm/{RID}.json", "not below", id="half-encoded-traversal"),
        pytest.param(f"{ROOT}%252e%252e/crm/{RID}.json", "not below", id="double-encoded"),
        pytest.param(f"{ROOT}..%2fcrm%2f{RID}.json", "not below", id="encoded-slash"),
        pytest.param(f"{ROOT}..\\crm\\{RID}.json", "not below", id="backslash"),
        pytest.param(f"{ROOT}..%5ccrm%5c{RID}.json", "not below", id="encoded-backslash"),
        pytest.param(f"{ROOT}..;/crm/{RID}.json", "not below", id="servlet-semicolon"),
        pytest.param(f"{ROOT}./{RID}.json", "not below", id="dot-segment"),
        pytest.param(f"{ROOT}/{RID}.json", "not below", id="empty-segment"),
        pytest.param(f"{ROOT}{RID}.json?next=https://evil.example", "not below", id="query"),
        pytest.param(f"{ROOT}{RID}.json?", "not below", id="empty-query"),
        pytest.param(f"{ROOT}{RID}.json#@evil.example", "not below", id="fragment"),
        pytest.param(f"{ROOT}{RID}%3F.json", "not below", id="encoded-question-mark"),
        pytest.param(f"http://exports.allled.example/dsar/orders/{RID}.json", "not below", id="h"),
        pytest.param(f"https://exports.allled.example:8443/dsar/orders/{RID}.json", "not below"),
        pytest.param("javascript:alert(1)//", "not below", id="javascript"),
        pytest.param(f"//evil.example/dsar/orders/{RID}.json", "not below", id="scheme-relative"),
        pytest.param(f"{RID}.json", "not below", id="relative"),
        pytest.param(f"/dsar/orders/{RID}.json", "not below", id="bare-path"),
        pytest.param(f"file:///srv/exports/orders/{RID}.json", "not below", id="other-scheme"),
        pytest.param(ROOT, "not below", id="the-root-itself"),
        pytest.param(f"{ROOT}{RID}/", "not below", id="a-directory"),
        pytest.param(f"{ROOT}{RID}.json\n", "not below", id="newline"),
        pytest.param(f"{ROOT}{RID} .json", "not below", id="space"),
        pytest.param(f"{ROOT}{'a/' * 1100}{RID}.json", "not below", id="too-long"),
        pytest.param(f"https://exports.allled.example:x/dsar/orders/{RID}.json", "not below"),
        # below the root, but not this request's
        pytest.param(f"{ROOT}REQ-OTHER.json", "does not name", id="another-request"),
        pytest.param(f"{ROOT}{RID}.5.json", "does not name", id="dotted-neighbour"),
        pytest.param(f"{ROOT}{RID}", "does not name", id="no-extension"),
        pytest.param(f"{ROOT}{RID}x/orders.json", "does not name", id="longer-directory"),
        pytest.param(f"{ROOT}login", "does not name", id="any-file"),
    ],
)
def test_forged_locations_are_refused(dm: DataMap, location: str, problem: str) -> None:
    found = export_problem(dm, System.orders, ref(location), RID)
    assert found is not None
    assert problem in found
    assert location.strip() not in found  # the reason never carries the location


@pytest.mark.parametrize(
    "request_id",
    ["REQ/../../etc", "a@b.example", "..", ".hidden", "REQ 1", "REQ:1", "", "R" * 129, "R\x00"],
)
def test_request_ids_a_path_would_rewrite_are_refused(dm: DataMap, request_id: str) -> None:
    assert not path_safe(request_id)
    found = export_problem(dm, System.orders, ref(f"{ROOT}REQ-1.json"), request_id)
    assert found == "the request id is not usable in a path as it is"


@pytest.mark.parametrize("request_id", ["REQ-1A2B3C", "r", "R_1.2", "R" * 128])
def test_path_safe_request_ids(request_id: str) -> None:
    assert path_safe(request_id)


def test_system_without_root_cannot_export(dm: DataMap) -> None:
    bare = with_root(dm, System.crm, None)
    found = export_problem(bare, System.crm, ref(f"{ROOT}{RID}.json"), RID)
    assert found == "crm declares no export root in the data map"


@pytest.mark.parametrize(
    ("location", "ok"),
    [
        (f"file:///srv/exports/orders/{RID}.json", True),
        (f"file://localhost/srv/exports/orders/{RID}.json", True),
        (f"file://evil.example/srv/exports/orders/{RID}.json", False),
        (f"file:///srv/exports/orders/../../../etc/{RID}.json", False),
        (f"file:///srv/exports/orders-x/{RID}.json", False),
        (f"file:///srv/exports/{RID}.json", False),
        (f"{ROOT}{RID}.json", False),
    ],
)
def test_file_roots(dm: DataMap, location: str, ok: bool) -> None:
    local = with_root(dm, System.orders, FILE_ROOT)
    assert (export_problem(local, System.orders, ref(location), RID) is None) is ok


@pytest.mark.parametrize(
    ("root", "ok"),
    [
        (ROOT, True),
        ("https://exports.allled.example/", True),
        ("https://exports.allled.example:8443/a%20b/", True),
        (FILE_ROOT, True),
        ("file://localhost/srv/exports/", True),
        ("https://exports.allled.example/dsar/orders", False),
        ("http://exports.allled.example/dsar/orders/", False),
        ("ftp://exports.allled.example/dsar/orders/", False),
        ("https://user@exports.allled.example/dsar/", False),
        ("https://exports.allled.example/dsar/?x=1", False),
        ("https://exports.allled.example/dsar/#x", False),
        ("https://exports.allled.example/dsar/../", False),
        ("https://exports.allled.example/dsar//orders/", False),
        ("https:///dsar/", False),
        ("file://fileserver/srv/exports/", False),
        ("file:srv/exports/", False),
        ("/srv/exports/", False),
        ("", False),
    ],
)
def test_root_problem(root: str, ok: bool) -> None:
    assert (root_problem(root) is None) is ok


@pytest.mark.parametrize(("count", "ok"), [(-1, False), (-(2**31), False), (0, True), (1, True)])
def test_a_copy_of_fewer_than_no_records_is_refused(dm: DataMap, count: int, ok: bool) -> None:
    """A negative count skipped the DPO's review of footage (asked for copies of one record
    or more) and went out (review, session 44). None is a count a copy may have."""
    copy = ref(f"{ROOT}{RID}.json").model_copy(update={"record_count": count})
    problem = export_problem(dm, System.orders, copy, RID)
    assert (problem is None) is ok
    if not ok:
        assert problem == "the count of records is below 0"
