"""`ghst plan` and `ghst billing` as an operator runs them on the host."""

from __future__ import annotations

from core.panel import Panel
from core.settings import Settings
from tests.actors import acting
from tests.integration.test_sshd_cli import ghst_env, run_ghst


async def test_operator_adds_a_plan_version_and_records_a_transfer_once(
    panel: Panel, settings: Settings
) -> None:
    alice = await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")
    env = ghst_env(settings)

    status, out, _ = await run_ghst("plan", "list", env=env)
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == ["free", "host-0", "host-1", "host-2"]
    assert "500.00 RUB" in out

    status, out, err = await run_ghst(
        "plan", "add", "host-1", "--name", "Host-1", "--price-rub", "1200", "--cpu", "2",
        "--ram-mb", "8192", "--disk-mb", "5120", "--services", "10", env=env,
    )  # fmt: skip
    assert status == 0, err
    assert "v2" in out and "1 200.00 RUB" in out
    assert (await panel.billing.plans.current("host-1")).price_kopecks == 120_000

    credit = ("billing", "credit", "alice", "499.90", "--reason", "bank", "--reference", "tx-1")
    status, out, _ = await run_ghst(*credit, env=env)
    assert status == 0 and "credited 499.90 RUB to alice" in out
    status, out, _ = await run_ghst(*credit, env=env)
    assert status == 0 and "already recorded" in out
    assert await panel.billing.balances.balance(acting(alice)) == 49_990

    status, _, err = await run_ghst(
        "billing", "credit", "alice", "-5", "--reason", "refund?", env=env
    )
    assert status == 2 and "positive amount" in err
    status, _, err = await run_ghst("billing", "credit", "nobody", "5", "--reason", "x", env=env)
    assert status == 3  # not found (core/errors.py)


async def test_operator_gives_a_promised_payment_and_runs_the_suspension_check(
    panel: Panel, settings: Settings
) -> None:
    user = await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")
    alice = acting(user)
    await panel.billing.subscriptions.create_project(alice, "shop", "host-0")
    env = ghst_env(settings)
    status, out, err = await run_ghst("billing", "suspend", env=env)
    assert status == 0 and "suspended 0 projects" in out, err

    status, out, err = await run_ghst("billing", "promise", "alice", env=env)
    assert status == 0, err
    assert "promised" in out and "to alice until" in out
    assert await panel.billing.balances.balance(alice) > 0
    status, _, err = await run_ghst("billing", "promise", "alice", env=env)
    assert status == 1 and "already have a promised payment open" in err  # a conflict
