"""Build the bundled real market-data sample in this folder.

Reads the CSV files shipped inside three PyPI packages (arch, backtesting,
gym-anytrading), rewrites them as data/<SYMBOL>_<interval>.csv.gz with the
header ts,open,high,low,close,volume and writes data/manifest.json.

Only two things change: the timestamp (normalised to ISO 8601 UTC with a Z
suffix, bar open time) and the column names. Price and volume fields are
copied as the original text, so no digits change. Rows that are not valid
OHLC bars are kept and reported on stdout. Source evidence for timezones,
licences and row counts is in data/SOURCES.md.

Usage (from the repo root):
    /tmp/datavenv/bin/pip install arch backtesting pandas
    /tmp/datavenv/bin/pip install --no-deps gym-anytrading
    /tmp/datavenv/bin/python data/build_sample.py

Only the standard library is used here; the packages are located with
importlib without being imported (gym_anytrading would need gymnasium).
"""

import csv
import gzip
import hashlib
import importlib.metadata as md
import importlib.util
import io
import json
import math
import os
from datetime import datetime

OUT = os.path.dirname(os.path.abspath(__file__))
HEADER = ["ts", "open", "high", "low", "close", "volume"]

# symbol, interval, dist name, import name, path in package, time column,
# time format, name, asset_class, currency, exchange
SERIES = [
    ("SPX", "1d", "arch", "arch", "data/sp500/sp500.csv.gz", "Date", "%m/%d/%Y", "S&P 500 Index", "index", "USD", None),
    (
        "IXIC",
        "1d",
        "arch",
        "arch",
        "data/nasdaq/nasdaq.csv.gz",
        "Date",
        "%m/%d/%Y",
        "NASDAQ Composite Index",
        "index",
        "USD",
        None,
    ),
    (
        "GOOG",
        "1d",
        "backtesting",
        "backtesting",
        "test/GOOG.csv",
        "",
        "%Y-%m-%d",
        "Google Inc. class A shares (ticker GOOG before 2014), unadjusted",
        "stock",
        "USD",
        "NASDAQ",
    ),
    (
        "GOOGL",
        "1d",
        "gym-anytrading",
        "gym_anytrading",
        "datasets/data/STOCKS_GOOGL.csv",
        "Date",
        "%Y-%m-%d",
        "Alphabet Inc. class A (GOOGL), adjusted for the 2014 share split",
        "stock",
        "USD",
        "NASDAQ",
    ),
    (
        "EURUSD",
        "1h",
        "backtesting",
        "backtesting",
        "test/EURUSD.csv",
        "",
        "%Y-%m-%d %H:%M:%S",
        "Euro / US Dollar spot rate (backtesting.py sample)",
        "fx",
        "USD",
        None,
    ),
    (
        "EURUSD_ASK",
        "1h",
        "gym-anytrading",
        "gym_anytrading",
        "datasets/data/FOREX_EURUSD_1H_ASK.csv",
        "Time",
        "%d.%m.%Y %H:%M:%S.%f",
        "Euro / US Dollar ask-side rate (gym-anytrading sample)",
        "fx",
        "USD",
        None,
    ),
]
# All source timestamps are already UTC (intraday) or plain trading dates
# (daily); see SOURCES.md for the evidence. No offset is applied.


def package_file(import_name, rel):
    spec = importlib.util.find_spec(import_name)
    return os.path.join(spec.submodule_search_locations[0], rel)


def licence(dist):
    meta = md.metadata(dist)
    return meta.get("License-Expression") or meta.get("License")


def read_rows(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def problems(o, h, lo, c, v):
    """Return the reasons a row is not a valid OHLC bar (empty list if valid)."""
    try:
        o, h, lo, c, v = (float(x) for x in (o, h, lo, c, v))
    except ValueError:
        return ["non-numeric field"]
    if any(math.isnan(x) for x in (o, h, lo, c, v)):
        return ["NaN"]
    out = []
    if min(o, h, lo, c) <= 0:
        out.append("zero/negative price")
    if h < max(o, c):
        out.append("high < max(open, close)")
    if lo > min(o, c):
        out.append("low > min(open, close)")
    if h < lo:
        out.append("high < low")
    if v < 0:
        out.append("negative volume")
    return out


def build(sym, interval, dist, imp, rel, tcol, tfmt, name, aclass, ccy, exch):
    src = package_file(imp, rel)
    header, rows = read_rows(src)
    col = {n: i for i, n in enumerate(header)}
    ti = col[tcol]
    vi = col.get("Volume")
    out = []
    for r in rows:
        dt = datetime.strptime(r[ti], tfmt)
        vol = r[vi] if vi is not None else "0"
        vals = [r[col["Open"]], r[col["High"]], r[col["Low"]], r[col["Close"]], vol]
        out.append((dt, [dt.strftime("%Y-%m-%dT%H:%M:%SZ")] + vals))
    out.sort(key=lambda x: x[0])  # stable: duplicates keep file order

    bad, seen = [], set()
    for _, rec in out:
        why = problems(*rec[1:])
        if rec[0] in seen:
            why.append("duplicate ts")
        seen.add(rec[0])
        if why:
            bad.append((rec, why))

    text = ",".join(HEADER) + "\n" + "".join(",".join(rec) + "\n" for _, rec in out)
    fname = f"{sym}_{interval}.csv.gz"
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("ascii"))
    data = buf.getvalue()
    with open(os.path.join(OUT, fname), "wb") as fh:
        fh.write(data)

    version = md.version(dist)
    print(
        f"{fname}: {len(out)} rows {out[0][1][0]} .. {out[-1][1][0]}; "
        f"invalid OHLC rows: {len(bad)}" + ("" if vi is not None else "; no volume in source")
    )
    for rec, why in bad[:10]:
        print("   ", ",".join(rec), "->", "; ".join(why))
    return {
        "symbol": sym,
        "name": name,
        "asset_class": aclass,
        "currency": ccy,
        "exchange": exch,
        "interval": interval,
        "file": fname,
        "rows": len(out),
        "first_ts": out[0][1][0],
        "last_ts": out[-1][1][0],
        "source": f"{dist} {version}: {imp}/{rel}",
        "licence": f"{licence(dist)} (as stated in the {dist} {version} package metadata)",
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def main():
    manifest = [build(*s) for s in SERIES]
    with open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8", newline="\n") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    main()
