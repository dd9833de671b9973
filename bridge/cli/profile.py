"""`eqbridge profile`: list, show, export, import and forget users' stored preferences.

Profiles live in `profiles_dir()` ($EQBRIDGE_PROFILE_DIR, else $XDG_DATA_HOME/eqbridge/profiles,
else ~/.local/share/eqbridge/profiles), one SQLite file per name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bridge.errors import ProfileError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="list, show, export, import or forget stored preferences")
    p.add_argument("--dir", type=Path, default=None, metavar="DIR",
                   help="profiles folder (default: $EQBRIDGE_PROFILE_DIR or the user data folder)")
    ps = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ps.add_parser("list", help="the profiles and how much each holds")
    s = ps.add_parser("show", help="kept phrases and taught names of a profile")
    s.add_argument("name", nargs="?", default="default")
    s.add_argument("--json", action="store_true", help="as JSON")
    e = ps.add_parser("export", help="write a profile as JSON")
    e.add_argument("name", nargs="?", default="default")
    e.add_argument("-o", "--output", type=Path, default=None, metavar="FILE", help="default: stdout")
    i = ps.add_parser("import", help="merge a JSON export into a profile (idempotent)")
    i.add_argument("file", type=Path, metavar="FILE", help="a JSON export, or - for stdin")
    i.add_argument("--name", default="default", help="profile to merge into (created if missing)")
    f = ps.add_parser("forget", help="delete a profile's data, or one phrase of it")
    f.add_argument("name")
    f.add_argument("--phrase", default=None, help="forget only this phrase (and a taught name spelled so)")
    f.add_argument("--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bridge import profile as P

    directory = args.dir.expanduser().resolve() if args.dir else P.profiles_dir()
    if args.action == "list":
        names = P.list_profiles(directory)
        if not names:
            print(f"no profiles in {directory}")
        for name in names:
            try:
                with P.open_profile(name, directory, create=False) as store:
                    c = store.counts()
                print(f"{name:<20} {c['keep']:>5} keeps {c['undo']:>5} undos {c['answer']:>6} answers "
                      f"{c['taught']:>4} taught")
            except ProfileError as exc:
                print(f"{name:<20} unusable: {exc}")
        return 0
    if args.action == "show":
        with P.open_profile(args.name, directory, create=False) as store:
            kept, counts = store.kept_phrases(), store.counts()
            taught = {n: store.taught(n) for n in sorted(store.taught_names())}
            path = store.path
        if args.json:
            print(json.dumps({"name": args.name, "path": str(path), "counts": counts,
                              "kept": [{"phrase": k.phrase, "keeps": k.keeps, "undos": k.undos,
                                        "curve": [round(float(g), 3) for g in k.curve]} for k in kept],
                              "taught": {n: [round(float(g), 3) for g in c] for n, c in taught.items()}},
                             ensure_ascii=False))
            return 0
        print(f"profile {args.name!r} ({path}): {counts['keep']} keeps, {counts['undo']} undos, "
              f"{counts['answer']} answers, {counts['taught']} taught names")
        for k in kept:
            print(f"  kept   {k.phrase!r:<32} {k.keeps} keep(s), {k.undos} undo(s) since  {_summary(k.curve)}")
        for n, c in taught.items():
            print(f"  taught {n!r:<32} {_summary(c)}")
        return 0
    if args.action == "export":
        with P.open_profile(args.name, directory, create=False) as store:
            data = store.export_json()
        text = json.dumps(data, ensure_ascii=False, indent=1)
        if args.output:
            tmp = args.output.with_name(args.output.name + ".tmp")
            tmp.write_text(text + "\n", encoding="utf-8")
            tmp.replace(args.output)
            print(f"exported {len(data['events'])} events and {len(data['taught'])} taught names to {args.output}",
                  file=sys.stderr)
        else:
            print(text)
        return 0
    if args.action == "import":
        try:
            raw = sys.stdin.read() if str(args.file) == "-" else args.file.read_text(encoding="utf-8")
            data = json.loads(raw)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProfileError(f"cannot read {args.file}: {exc}") from exc
        with P.open_profile(args.name, directory) as store:
            added = store.import_json(data)
        print(f"imported into {args.name!r}: {added['events']} new events, {added['taught']} taught names "
              "added or updated")
        return 0
    if args.action == "forget":
        what = f"phrase {args.phrase!r} from profile {args.name!r}" if args.phrase else f"everything in profile {args.name!r}"
        if not args.yes:
            if not sys.stdin.isatty():
                raise ProfileError(f"refusing to forget {what} without --yes (stdin is not a terminal)")
            if input(f"forget {what}? [y/N] ").strip().lower() not in ("y", "yes"):
                print("nothing forgotten")
                return 1
        with P.open_profile(args.name, directory, create=False) as store:
            n = store.forget(args.phrase)
        print(f"forgot {what}: {n} rows deleted")
        return 0
    raise ProfileError(f"unknown action {args.action!r}")


def _summary(curve) -> str:
    lo, mid, hi = curve[:12].mean(), curve[12:28].mean(), curve[28:].mean()
    return f"low {lo:+.1f} dB, mid {mid:+.1f} dB, high {hi:+.1f} dB (peak {abs(curve).max():.1f})"
