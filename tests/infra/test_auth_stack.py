"""End-user identity in the stacks (`-c auth=cognito|oidc`): the user pool and its client,
the Cognito authorizer on exactly the end-user routes, the 401 in the API's error shape,
the function's settings, the fallback checking the same tokens; none of it by default."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from functions.api.auth import REFUSED_MESSAGE
from functions.api.settings import COGNITO_SCOPE, ApiSettings
from infra.constructs.api import END_USER_PATHS
from tests.infra.conftest import CORS_ORIGIN, OIDC_AUDIENCE, OIDC_ISSUER, TEST_STAGE, Synth
from tests.infra.templates import api_methods, as_env, find_one, flatten, ref_id

pytestmark = pytest.mark.infra

_ENV_FILE = re.compile(
    r"cat > /etc/alertfusion/app\.env <<'ALERTFUSION_ENV'\n(.*?)\nALERTFUSION_ENV", re.S
)


def _api_env(synth: Synth) -> dict[str, Any]:
    props = find_one(synth.templates["api"], "AWS::Lambda::Function", "HttpFunction")[1]
    return dict(props["Properties"]["Environment"]["Variables"])


def _fallback_env(synth: Synth) -> dict[str, str]:
    (instance,) = synth.resources("fallback", "AWS::EC2::Instance").values()
    match = _ENV_FILE.search(flatten(instance["Properties"]["UserData"]))
    assert match
    return dict(line.split("=", 1) for line in match.group(1).splitlines())


def _one(synth: Synth, cfn_type: str) -> tuple[str, dict[str, Any]]:
    (found,) = synth.resources("api", cfn_type).items()
    return found[0], dict(found[1]["Properties"])


def test_the_user_pool_signs_people_in_by_e_mail_with_strong_passwords(
    synth_cognito: Synth,
) -> None:
    pool_id, pool = _one(synth_cognito, "AWS::Cognito::UserPool")
    assert pool["UsernameAttributes"] == ["email"]
    assert pool["AutoVerifiedAttributes"] == ["email"]
    policy = pool["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12
    assert all(policy[k] for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers"))
    assert policy["RequireSymbols"] is True
    assert pool["MfaConfiguration"] == "OPTIONAL"  # never between a caller and help
    assert pool["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert pool["AccountRecoverySetting"] == {
        "RecoveryMechanisms": [{"Name": "verified_email", "Priority": 1}]
    }
    assert pool["DeletionProtection"] == "ACTIVE"  # removal_policy=retain keeps the accounts
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is False  # self sign-up
    resource = synth_cognito.templates["api"]["Resources"][pool_id]
    assert resource["DeletionPolicy"] == "Retain"
    (domain,) = synth_cognito.resources("api", "AWS::Cognito::UserPoolDomain").values()
    assert flatten(domain["Properties"]["Domain"]) == f"alertfusion-{TEST_STAGE}-<AWS::AccountId>"


def test_the_app_client_is_public_with_the_code_flow_back_to_the_page(
    synth_cognito: Synth,
) -> None:
    api_id = find_one(synth_cognito.templates["api"], "AWS::ApiGateway::RestApi", "HttpApi")[0]
    _, client = _one(synth_cognito, "AWS::Cognito::UserPoolClient")
    assert client["GenerateSecret"] is False  # a page and a mobile app cannot keep one
    assert client["AllowedOAuthFlows"] == ["code"]
    assert set(client["AllowedOAuthScopes"]) == {"openid", "email", COGNITO_SCOPE}
    page = f"https://<{api_id}>.execute-api.<AWS::Region>.<AWS::URLSuffix>/{TEST_STAGE}/upload"
    assert [flatten(u) for u in client["CallbackURLs"]] == [page]
    assert [flatten(u) for u in client["LogoutURLs"]] == [page]
    assert client["PreventUserExistenceErrors"] == "ENABLED"
    assert client["EnableTokenRevocation"] is True
    assert client["SupportedIdentityProviders"] == ["COGNITO"]
    assert "ALLOW_USER_PASSWORD_AUTH" not in client["ExplicitAuthFlows"]  # SRP only


def test_the_authorizer_guards_exactly_the_end_user_routes(synth_cognito: Synth) -> None:
    authorizer_id, authorizer = _one(synth_cognito, "AWS::ApiGateway::Authorizer")
    pool_id = find_one(synth_cognito.templates["api"], "AWS::Cognito::UserPool", "Http")[0]
    assert authorizer["Type"] == "COGNITO_USER_POOLS"
    assert [ref_id(a) for a in authorizer["ProviderARNs"]] == [pool_id]
    assert authorizer["IdentitySource"] == "method.request.header.Authorization"
    methods = api_methods(synth_cognito.templates["api"])
    guarded = {key for key, props in methods.items() if props["AuthorizationType"] != "NONE"}
    assert guarded == {("ANY", path) for path in END_USER_PATHS}
    for key in guarded:
        props = methods[key]
        assert props["AuthorizationType"] == "COGNITO_USER_POOLS"
        assert ref_id(props["AuthorizerId"]) == authorizer_id
        assert props["AuthorizationScopes"] == [COGNITO_SCOPE]  # access tokens
        assert props["ApiKeyRequired"] is False
    # /backfills, /jobs itself and everything else through the proxy keep the key
    keyed = {path for (verb, path), p in methods.items() if verb == "ANY" and p["ApiKeyRequired"]}
    assert {"/jobs", "/{proxy+}", "/"} <= keyed
    assert not keyed & set(END_USER_PATHS)
    # CORS preflights stay open on the end-user routes too
    assert all(methods[("OPTIONS", path)]["AuthorizationType"] == "NONE" for path in END_USER_PATHS)


def test_the_authorizers_401_speaks_the_apis_error_shape(synth_cognito: Synth) -> None:
    responses = synth_cognito.resources("api", "AWS::ApiGateway::GatewayResponse").values()
    (unauthorized,) = [
        r["Properties"] for r in responses if r["Properties"]["ResponseType"] == "UNAUTHORIZED"
    ]
    assert unauthorized["StatusCode"] == "401"
    body = json.loads(unauthorized["ResponseTemplates"]["application/json"])
    assert body == {
        "error": {
            "code": "UNAUTHORIZED",
            "message": REFUSED_MESSAGE,
            "request_id": "$context.requestId",
        }
    }
    headers = unauthorized["ResponseParameters"]
    assert headers["gatewayresponse.header.WWW-Authenticate"] == (
        '\'Bearer realm="alertfusion", error="invalid_token"\''
    )
    assert headers["gatewayresponse.header.Access-Control-Allow-Origin"] == f"'{CORS_ORIGIN}'"


def test_the_function_checks_the_pools_tokens_itself(synth_cognito: Synth) -> None:
    template = synth_cognito.templates["api"]
    env = _api_env(synth_cognito)
    pool_id = find_one(template, "AWS::Cognito::UserPool", "Http")[0]
    client_id = find_one(template, "AWS::Cognito::UserPoolClient", "Http")[0]
    assert env["AUTH_MODE"] == "cognito"
    assert flatten(env["AUTH_ISSUER"]) == (
        f"https://cognito-idp.<AWS::Region>.<AWS::URLSuffix>/<{pool_id}>"
    )
    assert ref_id(env["AUTH_AUDIENCE"]) == client_id
    assert env["AUTH_SCOPE"] == COGNITO_SCOPE
    domain_id = find_one(template, "AWS::Cognito::UserPoolDomain", "Http")[0]
    assert flatten(env["AUTH_HOSTED_UI_URL"]) == (
        f"https://<{domain_id}>.auth.{synth_cognito.config.region}.amazoncognito.com"
    )
    assert "AUTH_JWKS_URL" not in env  # the issuer's own keys
    placeholders = as_env(env)
    placeholders["AUTH_ISSUER"] = "https://cognito-idp.ap-northeast-2.amazonaws.com/pool"
    placeholders["AUTH_HOSTED_UI_URL"] = "https://x.auth.ap-northeast-2.amazoncognito.com"
    settings = ApiSettings.model_validate(placeholders)
    assert settings.uses_tokens and settings.token_use == "access"


def test_the_pool_is_exported_and_the_fallback_checks_the_same_tokens(
    synth_cognito: Synth,
) -> None:
    outputs = synth_cognito.templates["api"]["Outputs"]
    api_stack = synth_cognito.stack_names["api"]
    exported = {o["Export"]["Name"] for o in outputs.values() if "Export" in o}
    assert {f"{api_stack}-UserPoolId", f"{api_stack}-UserPoolClientId"} <= exported
    assert {"SignInUrl", "TokenIssuer"} <= set(outputs)
    env = _fallback_env(synth_cognito)
    assert env["AUTH_MODE"] == "cognito"
    assert env["AUTH_AUDIENCE"] == f"<import:{api_stack}-UserPoolClientId>"
    assert env["AUTH_ISSUER"].endswith(f"/<import:{api_stack}-UserPoolId>")
    assert env["AUTH_SCOPE"] == COGNITO_SCOPE
    # Cognito redirects only to https pages: the fallback's plain-HTTP page has no sign-in
    assert "AUTH_HOSTED_UI_URL" not in env
    manifest = json.loads((synth_cognito.outdir / "manifest.json").read_text())
    fallback = manifest["artifacts"][synth_cognito.stack_names["fallback"]]
    assert api_stack in fallback["dependencies"]


def test_oidc_puts_no_authorizer_in_front_and_the_function_checks(synth_oidc: Synth) -> None:
    assert not synth_oidc.resources("api", "AWS::Cognito::UserPool")
    assert not synth_oidc.resources("api", "AWS::ApiGateway::Authorizer")
    methods = api_methods(synth_oidc.templates["api"])
    for path in END_USER_PATHS:
        props = methods[("ANY", path)]
        assert (props["AuthorizationType"], props["ApiKeyRequired"]) == ("NONE", False)
    assert all(
        p["ApiKeyRequired"]
        for (v, path), p in methods.items()
        if v == "ANY" and path not in END_USER_PATHS
    )
    env = _api_env(synth_oidc)
    assert (env["AUTH_MODE"], env["AUTH_ISSUER"], env["AUTH_AUDIENCE"]) == (
        "oidc",
        OIDC_ISSUER,
        OIDC_AUDIENCE,
    )
    assert "AUTH_SCOPE" not in env and "AUTH_HOSTED_UI_URL" not in env
    settings = ApiSettings.model_validate(as_env(env))
    assert settings.auth_audience == [OIDC_AUDIENCE] and settings.token_use is None


@pytest.mark.parametrize("fixture", ["synth", "synth_s3_bundle"])
def test_by_default_the_api_key_guards_everything_as_before(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    synth: Synth = request.getfixturevalue(fixture)
    assert not synth.resources("api", "AWS::Cognito::UserPool")
    assert not synth.resources("api", "AWS::ApiGateway::Authorizer")
    methods = api_methods(synth.templates["api"])
    assert all(p["AuthorizationType"] == "NONE" for p in methods.values())
    env = _api_env(synth)
    assert env["AUTH_MODE"] == "api_key" and "AUTH_ISSUER" not in env
    # the quotas are set anyway (they apply once users sign in)
    settings = ApiSettings.model_validate(as_env(env))
    assert (settings.quota_uploads_per_hour, settings.quota_predictions_per_day) == (
        int(env["QUOTA_UPLOADS_PER_HOUR"]),
        int(env["QUOTA_PREDICTIONS_PER_DAY"]),
    )
