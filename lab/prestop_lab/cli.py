"""``prestop lab``: demos and benchmarks on loopback (emulated Nacos, real processes)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from agent.render import stdout_is_terminal
from prestop_lab.java import JavaLabMissing
from prestop_lab.progress import Progress
from prestop_lab.rollout import RolloutResult, RolloutSettings


@click.group(invoke_without_command=True)
@click.option("--flavour", type=click.Choice(["1.x", "2.x", "3.x"]), default="2.x")
@click.option("--auth/--no-auth", default=False, help="Run the emulator with auth on.")
@click.option("--rate", type=float, default=50.0, help="Consumer requests per second.")
@click.option("--staleness", type=float, default=1.0, help="Consumer's list refresh interval.")
@click.option("--budget", type=float, default=20.0, help="The agent's --budget.")
@click.option(
    "--stack",
    type=click.Choice(["emulator", "real"]),
    default="emulator",
    help="The emulator and Python apps, or a real Nacos (2.x/3.x, auth on) and Spring Cloud "
    "apps; --staleness is then the consumer's load-balancer cache.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    is_flag=False,
    flag_value="-",
    metavar="[PATH]",
    help="Write the result as JSON to PATH (alone or '-': print it instead of the table). "
    "No progress lines. Piped output is JSON too, unless --table.",
)
@click.option("--table", is_flag=True, help="Print the table even when stdout is not a terminal.")
@click.pass_context
def lab(
    ctx: click.Context,
    flavour: str,
    auth: bool,
    rate: float,
    staleness: float,
    budget: float,
    stack: str,
    json_path: Path | None,
    table: bool,
) -> None:
    """Run the preStop demo: emulator, two app instances, a consumer, and `prestop drain`."""
    if ctx.invoked_subcommand is not None:
        return
    from prestop_lab.demo import (
        DemoSettings,
        json_doc,
        render,
        run_demo,
        run_real_demo,
        write_json,
    )
    from prestop_lab.progress import QUIET

    settings = DemoSettings(
        flavour=flavour, auth=auth, rate=rate, staleness=staleness, budget=budget, stack=stack
    )
    progress = QUIET if json_path is not None else Progress()
    if stack == "real":
        if flavour == "1.x":
            raise click.UsageError("--stack real: the real stack has Nacos 2.x and 3.x")
        try:
            result = run_real_demo(settings, progress)
        except JavaLabMissing as exc:
            raise click.UsageError(f"--stack real: {exc}") from None
    else:
        result = run_demo(settings, progress)
    if json_path == Path("-") or (json_path is None and not table and not stdout_is_terminal()):
        click.echo(json.dumps(json_doc(result, settings), indent=2))
    else:
        click.echo(render(result, settings))
    if json_path is not None and json_path != Path("-"):
        write_json(result, settings, json_path)
        click.echo(f"wrote {json_path}")
    sys.exit(0 if result.passed else 1)


@lab.command()
@click.option("--strategy", type=click.Choice(["none", "sleep", "agent", "all"]), default="all")
@click.option("--replicas", type=int, default=3)
@click.option("--rate", type=float, default=60.0, help="Requests per second over all consumers.")
@click.option("--time-scale", type=float, default=0.25, help="Multiplies every cache/poll time.")
@click.option("--grace", type=float, default=45.0, help="terminationGracePeriodSeconds.")
@click.option("--latency-tail", type=float, default=0.01, help="Share of slow requests.")
@click.option("--tail-ms", type=float, default=2000.0, help="Duration of a slow request.")
@click.option(
    "--mode",
    type=click.Choice(["exec", "sidecar"]),
    default="exec",
    help="How the agent runs: an exec preStop, or a sidecar called by an httpGet preStop.",
)
@click.option(
    "--registry",
    type=click.Choice(["nacos", "eureka"]),
    default="nacos",
    help="Nacos emulator with push/poll consumers, or Eureka emulator with fetching consumers.",
)
@click.option(
    "--stack",
    type=click.Choice(["emulator", "real"]),
    default="emulator",
    help="The emulators and Python apps (fast), or real servers and Spring Cloud apps "
    "(lab/java/build.sh builds them).",
)
@click.option(
    "--flavour",
    type=click.Choice(["2.x", "3.x"]),
    default="2.x",
    help="The real Nacos server's line (with --stack real --registry nacos).",
)
@click.option(
    "--startup",
    type=click.Choice(["none", "hold", "both"]),
    default="none",
    help="With --mode sidecar: hold each new instance out until it is ready (hold), not "
    "(none), or one rollout of each (both).",
)
@click.option(
    "--steady",
    type=float,
    default=0.0,
    help="Seconds of load before and after the rollout; > 0 measures new pods' first 30 s "
    "against the steady state.",
)
@click.option(
    "--notify/--no-notify",
    default=False,
    help="Agent strategy: give it the consumers' actuator (PRESTOP_CONSUMER_ACTUATOR) so it "
    "evicts their load-balancer caches and confirms they let go.",
)
@click.option(
    "--min-wait",
    type=float,
    default=None,
    help="Agent strategy: its --min-wait (default: the agent's 2 s). The lab has no traffic "
    "outside the registry, which is what --min-wait covers.",
)
@click.option(
    "--consumer-endpoints",
    type=click.Choice(["all", "all-but-one"]),
    default="all",
    help="Which consumers expose the caches and nacosdiscovery endpoints.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("lab-results"))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print rollout.json's document instead of the table, and no progress lines. Piped "
    "output is JSON too, unless --table.",
)
@click.option("--table", is_flag=True, help="Print the table even when stdout is not a terminal.")
def rollout(
    strategy: str,
    replicas: int,
    rate: float,
    time_scale: float,
    grace: float,
    latency_tail: float,
    tail_ms: float,
    mode: str,
    registry: str,
    stack: str,
    flavour: str,
    startup: str,
    steady: float,
    notify: bool,
    min_wait: float | None,
    consumer_endpoints: str,
    out: Path,
    as_json: bool,
    table: bool,
) -> None:
    """Benchmark a rolling update: no preStop, a fixed sleep, and the agent.

    Writes rollout.json and the report (rollout.png, rollout.svg) into --out.
    """
    from prestop_lab.progress import QUIET, Progress
    from prestop_lab.report import write_report
    from prestop_lab.rollout import STRATEGIES, json_doc, render, write_json

    strategies = STRATEGIES if strategy == "all" else (strategy,)
    if startup != "none" and mode != "sidecar":
        raise click.UsageError("--startup: the hold is the sidecar's; add --mode sidecar")
    runs = [
        RolloutSettings(
            strategy=name,
            replicas=replicas,
            rate=rate,
            time_scale=time_scale,
            grace=grace,
            latency_tail=latency_tail,
            tail_ms=tail_ms,
            mode=mode,
            registry=registry,
            stack=stack,
            flavour=flavour,
            startup=hold,
            steady_s=steady,
            notify=notify,
            min_wait=min_wait,
            consumer_endpoints=consumer_endpoints,
        )
        for name in strategies
        for hold in (("none", "hold") if startup == "both" else (startup,))
        if hold == "none" or (name == "agent" and mode == "sidecar")
    ]
    progress = QUIET if as_json else Progress()
    try:
        results = _run_all(runs, progress)
    except JavaLabMissing as exc:
        raise click.UsageError(f"--stack real: {exc}") from None
    progress.say("lab", "drawing the report")
    files = [f.name for f in write_report(results, runs[-1], out)]
    write_json(results, runs[-1], out / "rollout.json", files)
    if as_json or (not table and not stdout_is_terminal()):
        click.echo(json.dumps(json_doc(results, runs[-1], files), indent=2))
    else:
        click.echo(render(results, runs[-1]))
        click.echo(f"wrote {out / 'rollout.json'}, " + ", ".join(str(out / f) for f in files))
    ok = all(r.errors == 0 for r in results if r.strategy.startswith("agent"))
    sys.exit(0 if ok else 1)


def _run_all(runs: list[RolloutSettings], progress: Progress) -> list[RolloutResult]:
    """Each strategy's rollout; on the real stack they share one registry."""
    from prestop_lab.rollout import make_lab, run_rollout

    results = []
    with contextlib.ExitStack() as stack:
        # A real server takes tens of seconds to start: the strategies share one.
        shared = None
        if runs[0].stack == "real":
            progress.say("lab", f"starting the real {runs[0].registry} server(s), up to a minute")
            shared = stack.enter_context(make_lab(runs[0]))
        for settings in runs:
            results.append(run_rollout(settings, shared, progress))
    return results


@lab.command("diff")
@click.option("--registry", type=click.Choice(["nacos", "eureka"]), default="nacos")
@click.option("--flavour", type=click.Choice(["2.x", "3.x"]), default="2.x", help="Nacos line.")
def diff_cmd(registry: str, flavour: str) -> None:
    """Send one scripted sequence to the emulator and to the real server; table the differences.

    Exits 1 when a difference is neither fixed nor listed (prestop_lab.differential.KNOWN).
    """
    from prestop_lab.differential import run_real

    try:
        text, bad = run_real(registry, flavour)
    except JavaLabMissing as exc:
        raise click.UsageError(f"diff: {exc}") from None
    click.echo(text)
    sys.exit(1 if bad else 0)


@lab.command("push-delay")
@click.option("--flavour", type=click.Choice(["2.x", "3.x"]), default="2.x")
@click.option("--samples", type=int, default=10, help="Disable/enable rounds.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
def push_delay(flavour: str, samples: int, json_path: Path | None) -> None:
    """Real Nacos: delay from a take-out write to the SDK's push and the Spring consumer's view."""
    from prestop_lab.push_delay import render, run_push_delay, write_json

    click.echo(f"push-delay: real Nacos {flavour}, {samples} samples ...", err=True)
    try:
        result = run_push_delay("3.x" if flavour == "3.x" else "2.x", samples)
    except JavaLabMissing as exc:
        raise click.UsageError(f"push-delay: {exc}") from None
    click.echo(render(result))
    if json_path is not None:
        write_json(result, json_path)
        click.echo(f"wrote {json_path}")


def main() -> None:
    """``prestop-lab``: the lab without going through the agent's command."""
    lab(prog_name="prestop-lab")
