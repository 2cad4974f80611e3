"""LAVAD's official defaults beside vadnb's named options on the campus perfect-perception
inputs (lavad.oracle_backends): frame AUC / AP (vadnb.metrics via lavad.evaluate), computed
by lavad.options_table (the table notebooks 30 and 40 print).

    PYTHONPATH=. python benchmarks/lavad_options.py
"""
from __future__ import annotations

import tempfile

import pandas as pd

import vadnb.lavad as lavad
from vadnb.data import load_campus


def main() -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as cache:
        return lavad.options_table(load_campus().subset("test"), cache=cache)


if __name__ == "__main__":
    table = main()
    print(table.round(3).to_string(index=False))
    print(lavad.options_statement(table))
