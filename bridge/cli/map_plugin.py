"""`eqbridge map-plugin`: write a mapping for an EQ plugin eqbridge has never seen, by probing it."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("map-plugin", help="probe a VST3 EQ and write a mapping YAML for it")
    p.add_argument("path", type=Path, metavar="PATH.vst3")
    p.add_argument("--name", help="plugin name inside a bundle of several (e.g. 'Parametric Equalizer x8 Mono')")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.yaml")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from bridge.mapping import mapping_from_text
    from bridge.probe import map_plugin

    data = map_plugin(args.path, args.name)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    mapping = mapping_from_text(text, args.output)  # the loader must accept what we write
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}: {mapping.display_name}, {len(mapping.bands)} bands "
          f"({', '.join(sorted({t for b in mapping.bands for t in b.types}))})")
    return 0
