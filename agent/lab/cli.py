"""``prestop lab``: demos and benchmarks on loopback (emulated Nacos, real processes)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group(invoke_without_command=True)
@click.option("--flavour", type=click.Choice(["1.x", "2.x", "3.x"]), default="2.x")
@click.option("--auth/--no-auth", default=False, help="Run the emulator with auth on.")
@click.option("--rate", type=float, default=50.0, help="Consumer requests per second.")
@click.option("--staleness", type=float, default=1.0, help="Consumer's list refresh interval.")
@click.option("--budget", type=float, default=20.0, help="The agent's --budget.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@click.pass_context
def lab(
    ctx: click.Context,
    flavour: str,
    auth: bool,
    rate: float,
    staleness: float,
    budget: float,
    json_path: Path | None,
) -> None:
    """Run the preStop demo: emulator, two app instances, a consumer, and `prestop drain`."""
    if ctx.invoked_subcommand is not None:
        return
    from agent.lab.demo import DemoSettings, render, run_demo, write_json

    settings = DemoSettings(
        flavour=flavour, auth=auth, rate=rate, staleness=staleness, budget=budget
    )
    click.echo(f"lab: Nacos {flavour} emulator, 2 demo apps, a consumer at {rate:g} req/s ...")
    result = run_demo(settings)
    click.echo(render(result, settings))
    if json_path is not None:
        write_json(result, settings, json_path)
        click.echo(f"wrote {json_path}")
    sys.exit(0 if result.passed else 1)
