"""This installation's identity: what tells the panel's own Docker objects from another panel's.

Every panel keeps a random id in its own database (one row, made by migration 0005, or made
again if the row is gone). It goes on everything the panel creates as the label
`ghst.installation=<id>`, and into the names of what it creates (`<instance>-<id>-<project>-<n>`),
so two panels sharing one dockerd, even under the same GHST_INSTANCE, neither name nor remove
each other's objects: the instance label alone no longer makes an object the panel's.

A database that already had deployments before identities existed ("legacy") keeps the names
it gave (`<instance>-<project>-<n>`) and adopts the unlabelled objects of its own deployments:
those whose `ghst.project` and `ghst.deployment` labels name one of its deployments up to the
last one made before the migration (and, for networks and volumes, one of those projects). A
database made since adopts nothing: a fresh panel (a bench, a test) never takes another
panel's unlabelled objects for its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from core.db.pool import Connection, Pool, connection

INSTALLATION_LABEL = "ghst.installation"
PROJECT_LABEL = "ghst.project"
DEPLOYMENT_LABEL = "ghst.deployment"


@dataclass(frozen=True)
class Installation:
    id: str
    legacy: bool = False  # the database predates identities: keep its names, adopt its objects
    # (project, deployment id or "" for project-wide objects) of pre-identity objects it owns.
    adopted: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False)

    def namespace(self, instance: str) -> str:
        """The prefix of every Docker object name this installation makes."""
        return instance if self.legacy else f"{instance}-{self.id}"

    def made(self, labels: Mapping[str, str]) -> bool:
        """Did this installation make the object with these labels? Its label says so, or, on an
        unlabelled (pre-identity) object, one of its own earlier deployments does."""
        mark = labels.get(INSTALLATION_LABEL)
        if mark is not None:
            return mark == self.id
        return self.adopts(labels)

    def adopts(self, labels: Mapping[str, str]) -> bool:
        """Is this unlabelled (pre-identity) object one of this installation's own?"""
        project = labels.get(PROJECT_LABEL, "")
        return bool(project) and (project, labels.get(DEPLOYMENT_LABEL, "")) in self.adopted


# (deployment id, project name) of the deployments up to an id: the deployments' owner reads them
# (core.deploy.store.DeploymentStore.made_up_to), so this module stays below the deploy domain.
MadeUpTo = Callable[[int, Connection], Awaitable[list[tuple[int, str]]]]


async def load_installation(pool: Pool, made_up_to: MadeUpTo) -> Installation:
    """The installation's identity, made on first use (also after the table was emptied)."""
    async with connection(pool) as conn:
        await conn.execute(
            "INSERT INTO installation (legacy_last_deployment) VALUES (NULL)"
            " ON CONFLICT (singleton) DO NOTHING"
        )
        own = await conn.fetchrow("SELECT id, legacy_last_deployment FROM installation")
        assert own is not None
        last = own["legacy_last_deployment"]
        if last is None:
            return Installation(own["id"])
        made = await made_up_to(last, conn)
    adopted = {(project, str(deployment_id)) for deployment_id, project in made}
    adopted |= {(project, "") for _, project in made}
    return Installation(own["id"], legacy=True, adopted=frozenset(adopted))
