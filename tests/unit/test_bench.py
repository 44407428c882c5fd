"""The bench's scenario functions run on tiny sizes and report sane structures.

No timing assertions here: numbers are what `privops bench` reports, not what tests check.
"""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from privops.cli.bench import bench as bench_command
from privops.core.records import OrderPlaced, StopReplyReceived, UnsubscribeClicked
from privops.core.vocab import System
from privops.tools import bench


def test_sweep_scale_reports_memory_and_work_per_due_count() -> None:
    results = bench.sweep_scale(open_requests=2_000, due_counts=(0, 10, 100), schedule_sample=200)
    by_metric = {r.metric: r for r in results}
    memory = by_metric["DeadlineIndex bytes per open request"]
    assert memory.measured > 0
    assert memory.unit == "B"
    assert by_metric["Schedule bytes per open request (3 pending tasks)"].measured > 0
    sweeps = [r for r in results if r.metric.startswith("sweep with")]
    assert [r.details["fired"] for r in sweeps] == [0, 10, 100]
    assert [r.details["heap_pops"] for r in sweeps] == [0, 10, 100]
    assert all(r.details["naive_examined"] == 2_000 for r in sweeps)
    assert all(r.baseline is not None and r.baseline >= 0 for r in sweeps)
    assert by_metric["heap pops == number due (work independent of open)"].passed is True
    json.dumps([r.as_json() for r in results])


def test_consent_events_are_a_reproducible_mix_over_all_six_topics() -> None:
    events = bench.consent_events(2_000, 50, "t")
    assert events == bench.consent_events(2_000, 50, "t")
    assert {e.source for e in events} == set(System)
    assert len({e.subject_id for e in events}) <= 50
    kinds = {type(e) for e in events}
    assert {OrderPlaced, UnsubscribeClicked, StopReplyReceived} <= kinds
    assert len({e.event_id for e in events}) == 2_000


def test_upstream_consumed_sums_business_systems_only() -> None:
    text = "\n".join(
        [
            "# HELP privops_events_consumed_total x",
            'privops_events_consumed_total{source="orders",type="OrderPlaced"} 10.0',
            'privops_events_consumed_total{source="marketing",type="StopReplyReceived"} 5.0',
            'privops_events_consumed_total{source="commands",type="RequestSubmitted"} 7.0',
            'privops_events_consumed_created{source="orders",type="OrderPlaced"} 1.7e9',
        ]
    )
    assert bench.upstream_consumed(text) == 15


def test_result_ratio_and_percentile() -> None:
    result = bench.Result("s", "m", 50.0, 100.0, "ms", "", None)
    assert result.ratio == 0.5
    assert result.as_json()["ratio"] == 0.5
    assert bench.Result("s", "m", 1.0, None, "x", "", None).ratio is None
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 50) == 50.0
    assert bench.percentile(values, 99) == 99.0


def test_cli_rejects_an_unknown_scenario() -> None:
    app = typer.Typer()
    app.command()(bench_command)
    outcome = CliRunner().invoke(app, ["--scenario", "nope"])
    assert outcome.exit_code == 2
    assert "unknown scenario" in outcome.output


def test_cli_runs_sweep_scale_as_json() -> None:
    app = typer.Typer()
    app.command()(bench_command)
    outcome = CliRunner().invoke(app, ["--scenario", "sweep-scale", "--open", "500", "--json"])
    assert outcome.exit_code == 0, outcome.output
    rows = json.loads(outcome.stdout)
    assert {row["scenario"] for row in rows} == {"sweep-scale"}
    assert all({"measured", "baseline", "ratio", "target", "passed"} <= row.keys() for row in rows)


def test_bench_orders_meet_the_soft_opt_in_conditions() -> None:
    # OrderPlaced's conditions default to "not offered": the bench says them explicitly,
    # so its orders still exercise the soft opt-in (and, when ticked, the opt-out) path.
    orders = [e for e in bench.consent_events(2_000, 50, "t") if isinstance(e, OrderPlaced)]
    assert orders
    assert all(o.marketing_opt_out_offered and o.similar_products_marketing for o in orders)
    ticked = [o.marketing_opt_out_ticked for o in orders]
    assert any(ticked)
    assert not all(ticked)
