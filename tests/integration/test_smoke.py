from core.panel import Panel


async def test_panel_opens_against_real_services(panel: Panel) -> None:
    user = await panel.accounts.sign_up("alice", "alice@example.com", "correct horse battery")
    assert (await panel.accounts.get(user.id)).username == "alice"
