"""End users' identity (`-c auth=cognito`): a Cognito user pool, its hosted sign-in domain, and
the public app client the page and the mobile app sign in with (authorization code with
PKCE on the hosted sign-in; SRP from the app's SDK). API Gateway's Cognito authorizer and
the API itself check its access tokens (functions.api.auth)."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from infra.config import InfraConfig
from infra.nag import acknowledge

#: Cognito's own password minimum is 8; a recording of a crime deserves more
PASSWORD_MIN_LENGTH = 12
ACCESS_TOKEN_HOURS = 1
REFRESH_TOKEN_DAYS = 30


class EndUsers(Construct):
    """`pool`, `domain` (hosted sign-in) and `client` (public: no secret, PKCE)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        page_url: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.pool = cognito.UserPool(
            self,
            "Pool",
            user_pool_name=f"alertfusion-{config.stage}-users",
            self_sign_up_enabled=config.cognito_self_sign_up,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            password_policy=cognito.PasswordPolicy(
                min_length=PASSWORD_MIN_LENGTH,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.ESSENTIALS,
            deletion_protection=removal_policy == RemovalPolicy.RETAIN,
            removal_policy=removal_policy,
        )
        acknowledge(
            self.pool,
            "AwsSolutions-COG2",
            "MFA is optional (TOTP), not required: the users are people who may need to report "
            "an emergency at once; a second factor they have not set up, or a lost phone, must "
            "never stand between them and a call for help. Require it in the console for "
            "deployments whose users are staff rather than the public.",
        )
        acknowledge(
            self.pool,
            "AwsSolutions-COG8",
            "The Essentials feature plan: the Plus plan's threat protection (compromised "
            "credentials, adaptive authentication) is billed per monthly active user on top; "
            "switch the pool to Plus when the user base is large enough to attract credential "
            "stuffing. Quotas per user already bound what one stolen account can cost.",
        )
        # the hosted sign-in: <prefix>.auth.<region>.amazoncognito.com (the prefix is
        # unique per region: the stage and the account keep it so)
        self.domain = self.pool.add_domain(
            "Domain",
            cognito_domain=cognito.CognitoDomainOptions(
                domain_prefix=f"alertfusion-{config.stage}-{Aws.ACCOUNT_ID}"
            ),
        )
        self.client = self.pool.add_client(
            "Client",
            user_pool_client_name=f"alertfusion-{config.stage}-app",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[
                    cognito.OAuthScope.OPENID,
                    cognito.OAuthScope.EMAIL,
                    cognito.OAuthScope.COGNITO_ADMIN,
                ],
                callback_urls=[page_url],
                logout_urls=[page_url],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
            access_token_validity=Duration.hours(ACCESS_TOKEN_HOURS),
            id_token_validity=Duration.hours(ACCESS_TOKEN_HOURS),
            refresh_token_validity=Duration.days(REFRESH_TOKEN_DAYS),
        )

    @property
    def issuer(self) -> str:
        """The `iss` of the pool's tokens."""
        return f"https://cognito-idp.{Aws.REGION}.{Aws.URL_SUFFIX}/{self.pool.user_pool_id}"

    @property
    def hosted_ui_url(self) -> str:
        return self.domain.base_url()
