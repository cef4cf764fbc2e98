"""Moving the `champion` alias, with a history: promotion, rollback, and the record of every move.

MLflow keeps no alias history, so every move is written to the ledger (table `alias_moves`): first
as an intent, then the alias moves, then the intent is marked done. Every reader first reconciles
the history with the registry (:func:`alias_history`), so a run that stopped between moving the
alias and finishing its record, or a move made outside perennial (the MLflow UI, a script), shows
up as what it is instead of the history silently disagreeing with the registry.

Imports no MLflow at module level (``perennial.registry.mlflow_registry`` imports it inside its functions).
"""

from __future__ import annotations

import getpass
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

from perennial.core.locking import WorkspaceBusy, workspace_lock
from perennial.core.messages import one_line
from perennial.core.settings import Settings
from perennial.data.ledger import MOVE_RECOVERED, ROLLBACK, AliasMove, Ledger
from perennial.evaluation.gate import REJECT
from perennial.registry import mlflow_registry as registry
from perennial.registry.retention import files_deleted

CHAMPION = registry.CHAMPION
DEFAULT_ROLLBACK_REASON = "manual rollback"


class RollbackRefused(RuntimeError):
    """A rollback that was not done; the champion is unchanged. The message is one line."""


def actor() -> str:
    """Who is moving the alias: `user@host` of this process."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (e.g. a container user without a passwd entry)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _ledger(settings: Settings) -> Ledger:
    return Ledger(settings.ledger_path)


def _current(settings: Settings) -> str | None:
    champ = registry.champion(settings)
    return champ.version if champ else None


def alias_history(settings: Settings) -> list[AliasMove]:
    """Every recorded move of `champion`, oldest first, after reconciling with the registry (which
    may add an `unrecorded` move or complete an interrupted one; see ``Ledger.reconcile_alias``)."""
    ledger = _ledger(settings)
    ledger.reconcile_alias(CHAMPION, _current(settings))
    return ledger.alias_moves(CHAMPION)


def move_champion(
    settings: Settings, version: str | None, kind: str, reason: str, who: str | None = None
) -> AliasMove:
    """Point `champion` at `version` (None: remove the alias) and record the move (from the version
    it pointed to before). Checks nothing about the version: callers verify it loads first."""
    ledger = _ledger(settings)
    before = _current(settings)
    ledger.reconcile_alias(CHAMPION, before)  # so the history ends where this move starts
    target = None if version is None else str(version)
    move_id = ledger.begin_alias_move(CHAMPION, before, target, kind, reason, who or actor())
    try:
        if target is None:
            registry.delete_alias(settings, CHAMPION)
        else:
            registry.set_alias(settings, CHAMPION, target)
    except BaseException:
        ledger.abandon_alias_move(move_id)
        raise
    return ledger.finish_alias_move(move_id)


def previous_champion(moves: Sequence[AliasMove], current: str | None) -> str | None:
    """The version `champion` pointed to before `current` got it, by the history; None if unknown.

    The move that made `current` champion is the latest move into it that was not itself a
    rollback: so rolling back twice after promotions v1, v2, v3 goes to v2 and then v1, never back
    to the version just rolled away from."""
    if current is None:
        return None
    for move in reversed(moves):
        if move.to_version == current and move.kind != ROLLBACK:
            return move.from_version
    return None


def _version(text: str) -> str:
    text = text.strip()
    return text[1:] if text[:1] in ("v", "V") and text[1:].isdigit() else text


def rollback(
    settings: Settings,
    to: str | None = None,
    reason: str | None = None,
    who: str | None = None,
    force: bool = False,
) -> AliasMove:
    """Move `champion` back to `to` (default: the previous champion) after checking that the version
    exists, is not the current champion, was not turned down by the gate (unless `force`), and loads
    and predicts. Raises :class:`RollbackRefused` (champion unchanged) otherwise. Batch statuses in
    the ledger are left as they are: they record what each cycle decided, not which version serves
    now. Holds the workspace lock, so it never races a cycle's promotion."""
    try:
        with workspace_lock(settings, "rollback"):
            return _rollback(settings, to, reason, who, force)
    except WorkspaceBusy as busy:
        raise RollbackRefused(str(busy)) from busy


# Decisions the gate (or an interrupted cycle) left on a version that never earned the champion alias.
_NOT_PROMOTED = (REJECT, "interrupted")
_MAX_REASONS = 600  # characters of the gate's reasons quoted in a refusal


def _gate_refusal(target: str, tags: dict[str, str]) -> str | None:
    """Why a rollback to a version the gate did not promote needs --force; None if it was promoted
    (or has no decision: registered outside perennial)."""
    decision = tags.get("decision")
    if decision not in _NOT_PROMOTED:
        return None
    said = one_line(tags.get("reasons") or "no reasons recorded")
    if len(said) > _MAX_REASONS:
        said = said[: _MAX_REASONS - 3] + "..."
    return f"the gate's decision on v{target} was {decision}: {said}; pass --force to make it champion anyway"


def _rollback(
    settings: Settings, to: str | None, reason: str | None, who: str | None, force: bool = False
) -> AliasMove:
    moves = alias_history(settings)
    current = _current(settings)
    if current is None:
        raise RollbackRefused("no champion yet: nothing to roll back")
    if to is None:
        target = previous_champion(moves, current)
        if target is None:
            raise RollbackRefused(
                f"the alias history has no champion before v{current}: name one with --to VERSION"
            )
    else:
        target = _version(str(to))
    if target == current:
        raise RollbackRefused(f"v{target} is already the champion")
    try:
        tags = registry.version_tags(settings, target)
    except registry.RegistryError as error:
        raise RollbackRefused(f"unknown version {to or target}: {error}") from error
    if files_deleted(tags):
        raise RollbackRefused(f"v{target}'s model files were deleted by the retention policy")
    refusal = None if force else _gate_refusal(target, tags)
    if refusal:
        raise RollbackRefused(refusal)
    try:
        registry.verify_loadable(settings, target)
    except registry.RegistryError as error:
        raise RollbackRefused(f"v{target} failed the load check: {one_line(error)}") from error
    return move_champion(settings, target, ROLLBACK, reason or DEFAULT_ROLLBACK_REASON, who)


def format_move(move: AliasMove) -> str:
    """One line: time, from -> to, kind, actor, reason."""
    before = f"v{move.from_version}" if move.from_version else "none"
    after = f"v{move.to_version}" if move.to_version else "none"
    kind = move.kind + (" (recovered)" if move.state == MOVE_RECOVERED else "")
    return f"{move.moved_at}  {before:>5} -> {after:<5}  {kind:<10}  {move.actor}  {move.reason}"


def format_history(moves: Sequence[AliasMove]) -> str:
    if not moves:
        return "champion history: no moves yet"
    return "\n".join(["champion history (oldest first):", *(f"  {format_move(m)}" for m in moves)])


def champion_model_dir(settings: Settings, version: str) -> Path:
    """A local copy of a registered version, downloaded once and reused."""
    local = settings.models_dir / f"v{version}"
    if not (local / "config.json").is_file():
        shutil.rmtree(local, ignore_errors=True)  # a leftover partial copy
        registry.download_model(settings, version, local)  # builds beside `local`, then renames
    return local
