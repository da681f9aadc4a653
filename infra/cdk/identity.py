"""Identity stack: the Cognito user pool every human and client signs in with.

- Sign-in by e-mail, no self sign-up (admins invite users), MFA **required** with TOTP apps only (no SMS),
  a 14-character password policy with every character class, account recovery by e-mail, threat protection
  enforced (Plus feature plan), deletion protection, and the pool kept when the stack is deleted.
- Groups ``caller``, ``reviewer`` and ``admin`` (:data:`GROUPS`): the API maps a token's ``cognito:groups``
  to its roles through ``T2S_SERVE_JWT_{ADMIN,REVIEWER}_GROUPS`` (the serving stack sets both from here).
- An optional SAML identity provider (Microsoft Entra ID) from ``-c t2s:saml_metadata_url=...``.
- A hosted-UI domain (``-c t2s:auth_domain_prefix=...``) for the authorization-code flow.

The app clients live in the serving stack because the web client's callback URL defaults to the load
balancer's address, which only that stack knows; this stack would otherwise depend on it and back.
"""

from __future__ import annotations

from typing import Any

from infra.cdk.config import EnvConfig

# Cognito group -> API role (serving/auth.py). Precedence: the lowest number wins when a user is in several.
GROUPS = {"admin": 0, "reviewer": 1, "caller": 2}
# T2S_SERVE_JWT_ADMIN_GROUPS / T2S_SERVE_JWT_REVIEWER_GROUPS of the API task (no group: caller).
ADMIN_GROUPS, REVIEWER_GROUPS = ["admin"], ["reviewer"]
PASSWORD_MIN_LENGTH = 14
# The SAML attribute Microsoft Entra ID sends the e-mail address in.
ENTRA_EMAIL_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"


def build_identity_stack(scope: Any, stack_id: str, cfg: EnvConfig, **kwargs: Any) -> Any:
    import aws_cdk as cdk
    from aws_cdk import aws_cognito as cognito

    stack = cdk.Stack(scope, stack_id, **kwargs)
    pool = cognito.UserPool(
        stack, "UserPool", user_pool_name=f"t2s-{cfg.name}",
        self_sign_up_enabled=False, sign_in_aliases=cognito.SignInAliases(email=True, username=False),
        sign_in_case_sensitive=False, auto_verify=cognito.AutoVerifiedAttrs(email=True),
        standard_attributes=cognito.StandardAttributes(email=cognito.StandardAttribute(required=True, mutable=True)),
        mfa=cognito.Mfa.REQUIRED, mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
        password_policy=cognito.PasswordPolicy(
            min_length=PASSWORD_MIN_LENGTH, require_lowercase=True, require_uppercase=True, require_digits=True,
            require_symbols=True, temp_password_validity=cdk.Duration.days(3)),
        account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
        feature_plan=cognito.FeaturePlan.PLUS,
        standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
        deletion_protection=True, removal_policy=cdk.RemovalPolicy.RETAIN,
    )
    for group, precedence in GROUPS.items():
        cognito.CfnUserPoolGroup(stack, f"Group{group.title()}", user_pool_id=pool.user_pool_id, group_name=group,
                                 precedence=precedence, description=f"API role {group}")
    prefix = cfg.auth_domain_prefix or cdk.Fn.join("-", ["t2s", cfg.name, cdk.Aws.ACCOUNT_ID])
    domain = pool.add_domain("Domain", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=prefix))
    providers = [cognito.UserPoolClientIdentityProvider.COGNITO]
    saml = None
    if cfg.saml_metadata_url:
        saml = cognito.UserPoolIdentityProviderSaml(
            stack, "Saml", user_pool=pool, name=cfg.saml_provider_name,
            metadata=cognito.UserPoolIdentityProviderSamlMetadata.url(cfg.saml_metadata_url),
            attribute_mapping=cognito.AttributeMapping(email=cognito.ProviderAttribute.other(ENTRA_EMAIL_CLAIM)),
            idp_signout=True)
        providers.append(cognito.UserPoolClientIdentityProvider.custom(cfg.saml_provider_name))
    issuer = f"https://cognito-idp.{cfg.region}.amazonaws.com/{pool.user_pool_id}"
    cdk.CfnOutput(stack, "UserPoolId", value=pool.user_pool_id)
    cdk.CfnOutput(stack, "Issuer", value=issuer)
    cdk.CfnOutput(stack, "HostedUiDomain", value=domain.base_url())
    stack.pool = pool  # type: ignore[attr-defined]
    stack.domain = domain  # type: ignore[attr-defined]
    stack.issuer = issuer  # type: ignore[attr-defined]
    stack.identity_providers = providers  # type: ignore[attr-defined]
    stack.saml = saml  # type: ignore[attr-defined]
    return stack


def add_app_clients(stack: Any, cfg: EnvConfig, identity: Any, callback_urls: list[str],
                    logout_urls: list[str]) -> dict[str, Any]:
    """The API's client (sign-in with SRP from code and CLIs, or the authorization-code flow with PKCE on a
    localhost callback) and the analyst web front end's client (authorization code + PKCE on
    ``/app/callback``). Both are public clients (no secret: neither can keep one) and both issue access
    tokens the API accepts."""
    import aws_cdk as cdk
    from aws_cdk import aws_cognito as cognito

    scopes = [cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE]
    common: dict[str, Any] = dict(
        user_pool=identity.pool, generate_secret=False, prevent_user_existence_errors=True,
        enable_token_revocation=True, access_token_validity=cdk.Duration.hours(1),
        id_token_validity=cdk.Duration.hours(1), refresh_token_validity=cdk.Duration.hours(12),
        supported_identity_providers=identity.identity_providers)
    api = cognito.UserPoolClient(
        stack, "ApiClient", user_pool_client_name=f"t2s-{cfg.name}-api",
        auth_flows=cognito.AuthFlow(user_srp=True),
        o_auth=cognito.OAuthSettings(flows=cognito.OAuthFlows(authorization_code_grant=True), scopes=scopes,
                                     callback_urls=["http://localhost:8765/callback"],
                                     logout_urls=["http://localhost:8765/"]),
        **common)
    web = cognito.UserPoolClient(
        stack, "WebClient", user_pool_client_name=f"t2s-{cfg.name}-web",
        auth_flows=cognito.AuthFlow(),
        o_auth=cognito.OAuthSettings(flows=cognito.OAuthFlows(authorization_code_grant=True), scopes=scopes,
                                     callback_urls=callback_urls, logout_urls=logout_urls),
        **common)
    if identity.saml is not None:
        api.node.add_dependency(identity.saml)
        web.node.add_dependency(identity.saml)
    cdk.CfnOutput(stack, "ApiClientId", value=api.user_pool_client_id)
    cdk.CfnOutput(stack, "WebClientId", value=web.user_pool_client_id)
    return {"api": api, "web": web}
