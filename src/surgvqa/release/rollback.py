"""`surgvqa rollback`: point `champion` back at the champion before the latest promotion.

It undoes the latest promotion recorded in the registered model's history (MLflow keeps none of its own), so
re-running it is safe: after a rollback, a second one changes nothing and says so. `--to VERSION` picks the
version instead; either way the target must have passed its gate, and the rollback is recorded. It moves champion
only if it still points where the rollback was decided from (`registry.move_champion`; see promote.py on what
MLflow's registry makes atomic and what it does not).
"""

from __future__ import annotations

from surgvqa import entry
from surgvqa.errors import SurgvqaError
from surgvqa.params.promote import PromoteParams
from surgvqa.params.tracking import TrackingParams
from surgvqa.release import registry


def run(to_version: str | None, promote: PromoteParams, tracking: TrackingParams) -> dict:
    """Move champion back (or to `to_version`); returns {"champion", "previous", "changed"}."""
    name = promote.registered_model
    client = registry.client_for(tracking.resolved_uri())
    current = registry.alias_version(client, name, registry.CHAMPION)
    if current is None:
        raise SurgvqaError(f"{name} has no champion to roll back (run `surgvqa promote` first)")
    number = str(current.version)
    moves = [e for e in registry.history(client, name) if e["action"] in ("promote", "rollback")]
    if to_version is None:
        if not moves:
            raise SurgvqaError(f"{name}: no promotion is recorded, so there is nothing to undo; use --to VERSION")
        last = moves[-1]
        if last["action"] == "rollback" and last["version"] == number:
            print(f"rollback: champion is already v{number}, where the last rollback put it; nothing to do")
            return {"champion": number, "previous": number, "changed": False}
        if last["version"] != number:
            raise SurgvqaError(f"champion is v{number} but the history's last move set v{last['version']}: "
                               "it was moved outside surgvqa; choose the version with --to VERSION")
        if last["previous"] is None:
            raise SurgvqaError(f"v{number} was the first champion of {name}: there is none before it")
        to_version = last["previous"]
    if to_version == number:
        print(f"rollback: champion is already v{to_version}; nothing to do")
        return {"champion": number, "previous": number, "changed": False}
    moved, now = registry.move_champion(client, name, to_version, expected=number)
    if not moved:
        raise SurgvqaError(f"champion moved from v{number} to {'v' + now if now else 'none'} while the rollback was "
                           "decided (a concurrent promotion or rollback): nothing changed; run `surgvqa rollback` "
                           "again")
    registry.record_event(client, name, {"action": "rollback", "version": to_version, "previous": number})
    print(f"rollback: {name} champion v{number} -> v{to_version}")
    return {"champion": to_version, "previous": number, "changed": True}


def main(argv: list[str] | None = None) -> int:
    """`surgvqa rollback`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--to", dest="to_version", help="the version to make champion (default: the one before)")
    args = parser.parse_args(argv)
    return entry.call(run, args.params, to_version=args.to_version)


if __name__ == "__main__":
    raise SystemExit(main())
