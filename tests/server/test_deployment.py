"""What a process is part of: hub servers take the deployment's backplane, or refuse several workers."""

from __future__ import annotations

import pytest
import trio

import trio_ws
from trio_ws._server.deployment import Deployment, DeploymentError, deployed
from trio_ws.signalr import Hub, HubServer, InProcessBackplane


class Chat(Hub):
    async def echo(self, text: str) -> str:
        return text


async def test_a_hub_server_refuses_several_workers_without_a_backplane() -> None:
    """Under a deployment of two workers and no backplane, HubServer.run raises DeploymentError."""
    with deployed(Deployment(workers=2)), pytest.raises(ExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(HubServer(Chat()).run)
    [error] = info.value.exceptions
    assert isinstance(error, DeploymentError)
    assert str(error).startswith("the hub Chat cannot run on 2 workers without a backplane")


async def test_a_hub_server_with_its_own_backplane_runs_anywhere() -> None:
    """A backplane given to the HubServer is its own choice: no deployment overrides or refuses it."""
    backplane = InProcessBackplane()
    hub_server = HubServer(Chat(), backplane=backplane)
    with deployed(Deployment(workers=2)):
        async with trio.open_nursery() as nursery:
            await nursery.start(hub_server.run)
            assert hub_server.backplane is backplane
            await hub_server.aclose()


async def test_outside_a_deployment_one_process_uses_the_in_process_backplane() -> None:
    """Without a deployment (a program calling serve() itself), a hub server keeps its in-process one."""
    hub_server = HubServer(Chat())
    async with trio.open_nursery() as nursery:
        await nursery.start(hub_server.run)
        assert isinstance(hub_server.backplane, InProcessBackplane)
        assert hub_server.health() == trio_ws.Health(True, "in-process backplane")
        await hub_server.aclose()


def test_names_are_unique_in_a_process_and_given_back() -> None:
    """Two parts wanting one name get it and name-2, in order; a released name is free again."""
    deployment = Deployment()
    assert [deployment.claim_name("Chat") for _ in range(3)] == ["Chat", "Chat-2", "Chat-3"]
    deployment.release_name("Chat-2")
    assert deployment.claim_name("Chat") == "Chat-2"


def test_health_checks_reach_the_deployments_app() -> None:
    """A part's health check registered on the deployment is the app's; without an app, nothing."""
    app = trio_ws.App()
    deployment = Deployment(app=app)
    deployment.add_health_check("hub Chat", lambda: trio_ws.Health(True))
    assert [name for name, _ in app.health_checks] == ["hub Chat"]
    deployment.remove_health_check("hub Chat")
    assert app.health_checks == ()
    Deployment().add_health_check("hub Chat", lambda: trio_ws.Health(True))  # no app: ignored
