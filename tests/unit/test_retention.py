"""The retention policy as a pure function: what it deletes, and what it never touches."""

from __future__ import annotations

import random

import pytest

from perennial.registry.retention import DELETED, FILES_TAG, files_deleted, latest_promoted, plan_retention


def version(n: int, decision: str, aliases: tuple[str, ...] = (), **tags: str) -> dict:
    return {"version": str(n), "aliases": list(aliases), "tags": {"decision": decision, **tags}}


def test_keeps_the_newest_rejected_and_deletes_the_older_ones() -> None:
    versions = [
        version(1, "promote"),
        version(2, "reject"),
        version(3, "reject"),
        version(4, "promote", ("champion",)),
        version(5, "reject", ("challenger",)),
    ]
    plan = plan_retention(versions, keep_rejected=2, local=[])
    # 5 and 3 are the two newest rejected; 2 goes. Promoted versions are never candidates.
    assert plan.delete_files == ["2"]


def test_keep_zero_deletes_every_unprotected_rejected_version() -> None:
    versions = [version(1, "reject"), version(2, "interrupted"), version(3, "promote", ("champion",))]
    assert plan_retention(versions, keep_rejected=0, local=[]).delete_files == ["1", "2"]


def test_a_version_with_an_alias_is_never_deleted_even_when_old_and_rejected() -> None:
    # A rollback may point the champion at any loadable version, a rejected one included.
    versions = [
        version(1, "reject", ("champion",)),
        version(2, "reject", ("challenger",)),
        version(3, "reject"),
        version(4, "reject"),
    ]
    plan = plan_retention(versions, keep_rejected=0, local=["1", "2", "3", "4"])
    assert plan.delete_files == ["3", "4"]
    assert plan.drop_local == ["3", "4"]


def test_files_already_deleted_are_not_deleted_again() -> None:
    versions = [version(1, "reject", **{FILES_TAG: DELETED}), version(2, "reject"), version(3, "reject")]
    assert plan_retention(versions, keep_rejected=1, local=[]).delete_files == ["2"]


def test_local_copies_stay_only_for_aliased_and_latest_promoted_versions() -> None:
    versions = [
        version(1, "promote", ("champion",)),  # rolled back to
        version(2, "promote"),  # the latest promoted, no alias after the rollback
        version(3, "reject", ("challenger",)),
        version(4, "promote"),
        version(5, "reject"),
    ]
    # v4 is the latest promoted: kept; v2 is an earlier champion: comes back from the registry.
    plan = plan_retention(versions, keep_rejected=5, local=["1", "2", "3", "4", "5"])
    assert plan.drop_local == ["2", "5"]
    assert plan.delete_files == []


def test_latest_promoted_is_by_version_number_not_by_order() -> None:
    versions = [version(10, "promote"), version(9, "promote"), version(2, "promote")]
    assert latest_promoted(versions) == "10"
    assert latest_promoted([version(1, "reject")]) is None


@pytest.mark.parametrize("seed", range(30))
def test_random_registries_never_lose_a_protected_version(seed: int) -> None:
    rng = random.Random(seed)
    versions = []
    for n in range(1, rng.randint(1, 15) + 1):
        decision = rng.choice(["promote", "reject", "interrupted"])
        versions.append(version(n, decision))
    for alias in ("champion", "challenger"):
        if rng.random() < 0.8:
            rng.choice(versions)["aliases"].append(alias)
    keep = rng.randint(0, 3)
    local = [row["version"] for row in versions if rng.random() < 0.7]
    plan = plan_retention(versions, keep_rejected=keep, local=local)

    protected = {row["version"] for row in versions if row["aliases"]} | {latest_promoted(versions)}
    assert not protected & set(plan.delete_files)
    assert not protected & set(plan.drop_local)
    assert set(plan.drop_local) <= set(local)
    never_served = [row for row in versions if row["tags"]["decision"] != "promote"]
    newest = {row["version"] for row in sorted(never_served, key=lambda r: -int(r["version"]))[:keep]}
    assert not newest & set(plan.delete_files)  # the newest `keep` rejected keep their files
    deleted = [row for row in versions if row["version"] in plan.delete_files]
    assert all(row["tags"]["decision"] != "promote" for row in deleted)


def test_files_deleted_reads_the_tag() -> None:
    assert files_deleted({FILES_TAG: DELETED})
    assert not files_deleted({"decision": "reject"})
