"""Print an HS256 JWT for the pgtrade API, signed with $PGRST_JWT_SECRET (standard library only).

PGRST_JWT_SECRET=... python3 docker/make_jwt.py --account alice            # {"role": "trader", "account": "alice"}
PGRST_JWT_SECRET=... python3 docker/make_jwt.py --role web_anon --hours 1
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict, secret: str) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", default="trader", help="database role the request runs as (default: trader)")
    ap.add_argument("--account", help="trading account name (claim `account`)")
    ap.add_argument("--hours", type=float, default=24.0, help="lifetime in hours (default 24; 0: no expiry)")
    args = ap.parse_args()
    secret = os.environ.get("PGRST_JWT_SECRET", "")
    if len(secret) < 32:
        sys.exit("make_jwt: set PGRST_JWT_SECRET to the same secret PostgREST uses (32 characters or more)")
    claims: dict = {"role": args.role}
    if args.account:
        claims["account"] = args.account
    if args.hours > 0:
        claims["exp"] = int(time.time() + args.hours * 3600)
    print(make_jwt(claims, secret))


if __name__ == "__main__":
    main()
