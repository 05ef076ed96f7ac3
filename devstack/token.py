"""`make token USER=alice`: an access token of a demo user of the local stack that
`make serve ARGS="--auth cognito"` runs on the same PORT, printed as the last line.

    python -m devstack.token [USER] [--port N] [--id-token]

The user is created in the local Cognito user pool on first use (password: the demo
password, devstack.cognito.DEMO_PASSWORD) and signed in with USER_PASSWORD_AUTH, as an
app signs in. Use the token as ``Authorization: Bearer <token>``:

    TOKEN=$(make -s token USER=alice | tail -n 1)
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/jobs/<id>

Exit status: 0 with a token, 2 when no local stack with a user pool runs on the port.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from devstack.cognito import STATE_DIR, ServeState, ensure_user, sign_in


def main(argv: list[str] | None = None, *, state_dir: Path = STATE_DIR) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.token", description=__doc__)
    parser.add_argument("user", nargs="?", default="alice", help="demo user (made on first use)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--id-token", action="store_true", help="the ID token instead")
    args = parser.parse_args(argv)
    err = sys.stderr
    state = ServeState.read(args.port, state_dir)
    if state is None:
        err.write(
            f"token: no local stack with a user pool on port {args.port}: start it with "
            f'`make serve ARGS="--auth cognito"` (PORT={args.port}) and ask again\n'
        )
        return 2
    import boto3

    pool = state.pool
    admin = boto3.session.Session().client(
        "cognito-idp",
        region_name=pool.region,
        endpoint_url=pool.endpoint_url,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    made = ensure_user(admin, pool, args.user)
    result = sign_in(pool, args.user)
    kind = "ID" if args.id_token else "access"
    err.write(
        f"{'created and ' if made else ''}signed in {args.user} at the local user pool "
        f"{pool.pool_id} (http://127.0.0.1:{args.port}); {kind} token valid "
        f"{result['ExpiresIn']} s, send it as 'Authorization: Bearer <token>':\n"
    )
    sys.stdout.write(result["IdToken" if args.id_token else "AccessToken"] + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
