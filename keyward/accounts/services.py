"""Account rules: sign-up, sign-in, sessions, TOTP and roles. The REST API and the console call these."""

import base64
import hmac
import io
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_otp.plugins.otp_totp.models import TOTPDevice

from keyward.accounts import throttle
from keyward.accounts.models import (
    SESSION_TOKEN_PREFIX,
    Account,
    PendingSignup,
    Role,
    SessionToken,
    hash_token,
    normalize_email,
)
from keyward.audit import events
from keyward.audit.models import Outcome
from keyward.audit.writer import Actor, AuditContext, record_committed_event, record_event
from keyward.core.exceptions import (
    Conflict,
    InvalidRequest,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    Unauthorized,
)
from keyward.core.net import address_bucket
from keyward.tenancy.models import Org, unique_org_slug
from keyward.tenancy.scoping import scope_to_org

logger = logging.getLogger(__name__)

GRANTABLE_ROLES = (Role.VIEWER, Role.ADMIN, Role.OWNER)
_TOTP_CODE = re.compile(r"^\d{6,8}$")
_IDENTIFIER_MARKER_SALT = "keyward.accounts.unknown-identifier"
PENDING_SIGNUP_PREFIX = "kw_signup_"


@dataclass(frozen=True)
class IssuedSession:
    """A new session: the plaintext token exists only here, on its way to the caller."""

    token: str
    session: SessionToken

    @property
    def expires_at(self) -> datetime:
        return self.session.expires_at


def start_session(account: Account, *, ip: str | None, otp_verified: bool) -> IssuedSession:
    token = SessionToken.new_token()
    session = SessionToken.objects.create(
        account=account,
        token_hash=hash_token(token),
        prefix=token[: len(SESSION_TOKEN_PREFIX) + 6],
        otp_verified=otp_verified,
        expires_at=timezone.now() + settings.KEYWARD_SESSION_TTL,
        created_ip=ip or None,
    )
    return IssuedSession(token=token, session=session)


def resolve_session(token: str) -> SessionToken | None:
    """The live session for a bearer token, with its account and org, in one query; else None."""
    if not token.startswith(SESSION_TOKEN_PREFIX) or len(token) > 128:
        return None
    session = (
        SessionToken.objects.select_related("account", "account__org").filter(token_hash=hash_token(token)).first()
    )
    if session is None or not session.matches(token) or not session.is_live() or not session.account.is_active:
        return None
    return session


def revoke_session(session: SessionToken) -> None:
    SessionToken.objects.filter(pk=session.pk).revoke()


def revoke_sessions(account: Account, *, keep: SessionToken | None = None) -> int:
    sessions = SessionToken.objects.filter(account=account)
    if keep is not None:
        sessions = sessions.exclude(pk=keep.pk)
    return sessions.revoke()


def _password_errors(password: str, email: str) -> list[str]:
    try:
        validate_password(password, user=Account(email=email))
    except ValidationError as exc:
        return list(exc.messages)
    return []


def request_signup(
    *, org_name: str, email: str, password: str, ip: str | None, audit_context: AuditContext | None = None
) -> None:
    """Start a sign-up: email a confirmation link; the org and its owner are created when it comes back.

    The caller gets the same answer whether or not the email already has an account, so sign-up
    cannot be used to learn who has one: a taken email gets a note ("someone tried to sign up with
    your address") instead of a link, and the attempt is audited in that account's org. Both paths
    hash the password, write one audit row and send one email.
    """
    email = normalize_email(email)
    context = audit_context or AuditContext.current(ip)
    errors = _password_errors(password, email)
    if errors:
        raise InvalidRequest("The password is too weak.", fields={"password": errors})
    password_hash = make_password(password)
    existing = Account.objects.select_related("org").filter(email=email).first()
    if existing is not None:
        record_committed_event(
            org=existing.org,
            event_type=events.ACCOUNT_SIGNUP_ATTEMPTED,
            outcome=Outcome.DENIED,
            reason_code="email_taken",
            actor=Actor.anonymous(existing.email, existing.pk),
            context=context,
        )
        _send_email(email, *_email_taken_message(context))
        return
    token = PENDING_SIGNUP_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        now = timezone.now()
        PendingSignup.objects.filter(expires_at__lte=now).delete()
        PendingSignup.objects.create(
            token_hash=hash_token(token),
            email=email,
            org_name=org_name.strip(),
            password_hash=password_hash,
            expires_at=now + settings.KEYWARD_SIGNUP_CONFIRMATION_TTL,
        )
        record_event(
            org=None,
            event_type=events.ACCOUNT_SIGNUP_REQUESTED,
            outcome=Outcome.PENDING,
            actor=Actor.anonymous(unknown_identifier_marker(email)),
            context=context,
        )
    # After commit: no transaction (nor the chain lock its audit row took) waits on a mail server.
    _send_email(email, *_confirmation_message(token))


def confirm_signup(*, token: str, ip: str | None, audit_context: AuditContext | None = None) -> IssuedSession:
    """Create the org and its first owner from a confirmed sign-up, and sign the owner in."""
    context = audit_context or AuditContext.current(ip)
    invalid = InvalidRequest(
        "This confirmation link is invalid, expired or already used; sign up again.", code="invalid_signup_token"
    )
    if not token.startswith(PENDING_SIGNUP_PREFIX) or len(token) > 128:
        raise invalid
    pending = PendingSignup.objects.filter(token_hash=hash_token(token), expires_at__gt=timezone.now()).first()
    if pending is None or not hmac.compare_digest(pending.token_hash, hash_token(token)):
        raise invalid
    try:
        issued = _create_org_with_owner(pending, ip, context)
    except IntegrityError:
        if Account.objects.filter(email=pending.email).exists():
            raise Conflict("This email has an account already; sign in instead.", code="email_taken") from None
        # A concurrent sign-up took the same org slug; the retry picks the next free one.
        issued = _create_org_with_owner(pending, ip, context)
    if issued is None:
        raise invalid  # a concurrent confirmation used the link first
    return issued


@transaction.atomic
def _create_org_with_owner(pending: PendingSignup, ip: str | None, context: AuditContext) -> IssuedSession | None:
    """None when the sign-up is gone (a concurrent confirmation consumed it): a link works once."""
    consumed, _ = PendingSignup.objects.filter(pk=pending.pk).delete()
    if not consumed:
        return None
    PendingSignup.objects.filter(email=pending.email).delete()  # its other links, if any, die with it
    org = Org.objects.create(name=pending.org_name, slug=unique_org_slug(pending.org_name))
    account = Account.objects.create_account(email=pending.email, password=None, org=org, role=Role.OWNER)
    account.password = pending.password_hash
    account.save(update_fields=["password"])
    issued = start_session(account, ip=ip, otp_verified=False)
    record_event(
        org=org,
        event_type=events.ACCOUNT_SIGNUP,
        outcome=Outcome.SUCCESS,
        actor=account,
        context=context,
        detail={"org_slug": org.slug, "role": account.role},
    )
    return issued


def _confirmation_message(token: str) -> tuple[str, str]:
    return (
        "[keyward] Confirm your sign-up",
        "\n".join(
            [
                "Someone (we hope you) asked to create a keyward org with this email address.",
                "",
                "To create it and sign in, send this confirmation token within 24 hours:",
                "",
                f"  curl -X POST {settings.KEYWARD_ISSUER}/auth/signup/confirm \\",
                "       -H 'Content-Type: application/json' \\",
                f'       -d \'{{"token": "{token}"}}\'',
                "",
                "If it was not you, ignore this email: nothing is created without it.",
            ]
        ),
    )


def _email_taken_message(context: AuditContext) -> tuple[str, str]:
    return (
        "[keyward] Someone tried to sign up with your email",
        "\n".join(
            [
                "Someone asked to create a new keyward org with this email address, which already has",
                f"an account. Nothing was created. Request id: {context.request_id or '-'}.",
                "",
                f"If it was you, sign in instead: {settings.KEYWARD_ISSUER}/auth/login",
                "If it was not, you need not do anything; your account is unchanged.",
            ]
        ),
    )


def _send_email(to: str, subject: str, body: str) -> None:
    """Send now: the caller's answer says an email went out. A mail server that fails is a 503."""
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to])
    except Exception as exc:
        logger.error("sign-up email could not be sent: %s", type(exc).__name__)
        raise ServiceUnavailable("Email cannot be sent right now; try again later.", code="email_unavailable") from None


def prune_sign_in_records() -> dict[str, int]:
    """Drop sign-in counters of past windows and expired pending sign-ups."""
    expired, _ = PendingSignup.objects.filter(expires_at__lte=timezone.now()).delete()
    return {"counters": throttle.prune_expired(), "pending_signups": expired}


def _dummy_password_check(password: str) -> None:
    """Spend the same hashing work as a real check, so unknown emails answer in similar time."""
    Account().set_password(password)


def _confirmed_device(account: Account) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=account, confirmed=True).first()


def verify_totp(device: TOTPDevice, code: str | None) -> bool:
    """Check a TOTP code under a row lock, so one code can never be accepted twice, even concurrently."""
    code = (code or "").replace(" ", "")
    if not _TOTP_CODE.match(code):
        return False
    with transaction.atomic():
        locked = TOTPDevice.objects.select_for_update().filter(pk=device.pk).first()
        # None: a concurrent setup or disable replaced the device, so the code was for a secret that is gone.
        return locked is not None and locked.verify_token(code)


def login(
    *, email: str, password: str, totp: str | None, ip: str | None, audit_context: AuditContext | None = None
) -> IssuedSession:
    """Password sign-in with optional TOTP; throttled per account (known or not) and per source address.

    The attempt is counted before the password is checked (see `throttle`), so parallel guesses
    cannot exceed the limit. Every checked attempt is audited; while a key is throttled only its
    first refusal in the window is (the rest are logged). A refusal's row commits on its own before
    the error is raised (so the refusal cannot roll it back); call this outside any transaction.
    """
    email = normalize_email(email)
    context = audit_context or AuditContext.current(ip)
    attempt = throttle.reserve({"account": email, "ip": address_bucket(ip) if ip else "unknown"})
    if attempt.over:
        attempt.release()
        _refuse_throttled(email, attempt, context)

    account = Account.objects.select_related("org").filter(email=email).first()
    if account is None:
        _dummy_password_check(password)
        password_ok = False
    else:
        password_ok = account.check_password(password)
    if not password_ok or not account.is_active:
        cause = "unknown_email" if account is None else "wrong_password" if not password_ok else "account_inactive"
        _refuse_login(
            email,
            account,
            context,
            Unauthorized("The email or password is wrong.", code="invalid_credentials"),
            cause=cause,
        )

    device = _confirmed_device(account)
    if device is not None:
        if not totp:
            # The right password without the code is the first step of a 2FA sign-in, not a failure.
            attempt.release()
            _refuse_login(
                email,
                account,
                context,
                Unauthorized(
                    "This account uses two-factor authentication; send the current code.", code="totp_required"
                ),
                cause="second_factor_missing",
            )
        if not verify_totp(device, totp):
            _refuse_login(
                email,
                account,
                context,
                Unauthorized("The two-factor code is wrong or was already used.", code="totp_required"),
                cause="second_factor_wrong",
            )

    attempt.reset("account")
    attempt.release("ip")
    with transaction.atomic():
        account.last_login = timezone.now()
        account.save(update_fields=["last_login"])
        issued = start_session(account, ip=ip, otp_verified=device is not None)
        record_event(
            org=account.org,
            event_type=events.ACCOUNT_LOGIN,
            outcome=Outcome.SUCCESS,
            actor=account,
            context=context,
            detail={"second_factor": device is not None},
        )
    return issued


def _refuse_throttled(email: str, attempt: throttle.Reservation, context: AuditContext) -> NoReturn:
    """Refuse an over-limit attempt (429). Only the first refusal per key and window is audited.

    Refusals cost the caller nothing, so auditing each would let anyone flood an org's chain (and
    its lock); the rest are logged with a running count instead.
    """
    error = RateLimited("Too many failed sign-in attempts; try again later.", retry_after=attempt.remaining)
    refusals = attempt.count_refusal()
    if refusals > 1:
        logger.info(
            "sign-in refused, %s limit reached: refusal %d this window for identifier %s (only the first is audited)",
            "+".join(attempt.over),
            refusals,
            identifier_fingerprint(email),
        )
        raise error
    account = Account.objects.select_related("org").filter(email=email).first()
    _refuse_login(email, account, context, error, cause="too_many_failures")


def identifier_fingerprint(identifier: str) -> str:
    """A non-reversible stand-in for what was typed as an email: `<keyed hash>[@domain]`.

    It may be a password pasted into the wrong field, so it is never stored or logged as typed.
    The HMAC (keyed by SECRET_KEY, so a short password cannot be guessed back from it) still lets
    repeated attempts on one identifier be correlated; a valid email keeps its domain.
    """
    digest = salted_hmac(_IDENTIFIER_MARKER_SALT, identifier, algorithm="sha256").hexdigest()[:16]
    try:
        validate_email(identifier)
    except ValidationError:
        return digest
    return f"{digest}@{identifier.rsplit('@', 1)[1]}"


def unknown_identifier_marker(identifier: str) -> str:
    """How an audit row names a sign-in identifier that is no account: `unknown:<fingerprint>`."""
    return f"unknown:{identifier_fingerprint(identifier)}"


def _refuse_login(
    email: str, account: Account | None, context: AuditContext, error: ServiceError, *, cause: str
) -> NoReturn:
    """Audit a refused sign-in in the account's org chain (platform chain if unknown), then raise.

    A known account is named by its email; anything else only by `unknown_identifier_marker`.
    """
    record_committed_event(
        org=account.org if account is not None else None,
        event_type=events.ACCOUNT_LOGIN_FAILED,
        outcome=Outcome.DENIED if isinstance(error, RateLimited) else Outcome.FAILURE,
        reason_code=error.code,
        actor=Actor.anonymous(account.email, account.pk)
        if account is not None
        else Actor.anonymous(unknown_identifier_marker(email)),
        context=context,
        detail={"cause": cause},
    )
    raise error


def logout(session: SessionToken, *, audit_context: AuditContext | None = None) -> None:
    """End the caller's own session (audited as account.logout)."""
    with transaction.atomic():
        revoke_session(session)
        record_event(
            org=session.account.org,
            event_type=events.ACCOUNT_LOGOUT,
            outcome=Outcome.SUCCESS,
            actor=session.account,
            context=audit_context,
        )


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str


def setup_totp(account: Account) -> TotpEnrolment:
    """Start (or restart) TOTP enrolment with a fresh secret; it takes effect only once enabled."""
    if _confirmed_device(account) is not None:
        raise Conflict("Two-factor authentication is already on; disable it first.", code="totp_already_enabled")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=account, confirmed=False).delete()
        device = TOTPDevice.objects.create(user=account, name="default", confirmed=False)
    uri = device.config_url
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=_qr_data_uri(uri))


def _qr_data_uri(text: str) -> str:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def enable_totp(
    account: Account, session: SessionToken, code: str, *, audit_context: AuditContext | None = None
) -> None:
    device = TOTPDevice.objects.filter(user=account, confirmed=False).order_by("-id").first()
    if device is None:
        if _confirmed_device(account) is not None:
            raise Conflict("Two-factor authentication is already on.", code="totp_already_enabled")
        raise Conflict("Start with POST /auth/2fa/setup.", code="totp_not_set_up")
    if not verify_totp(device, code):
        raise InvalidRequest("The code is wrong or was already used.", code="invalid_totp_code")
    with transaction.atomic():
        TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True)
        SessionToken.objects.filter(pk=session.pk).update(otp_verified=True)
        revoke_sessions(account, keep=session)
        record_event(
            org=account.org,
            event_type=events.ACCOUNT_2FA_ENABLED,
            outcome=Outcome.SUCCESS,
            actor=account,
            context=audit_context,
        )


def disable_totp(
    account: Account, session: SessionToken, code: str, *, audit_context: AuditContext | None = None
) -> None:
    device = _confirmed_device(account)
    if device is None:
        raise Conflict("Two-factor authentication is not on.", code="totp_not_enabled")
    if not verify_totp(device, code):
        raise InvalidRequest("The code is wrong or was already used.", code="invalid_totp_code")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=account).delete()
        revoke_sessions(account, keep=session)
        record_event(
            org=account.org,
            event_type=events.ACCOUNT_2FA_DISABLED,
            outcome=Outcome.SUCCESS,
            actor=account,
            context=audit_context,
        )


def _lock_org_accounts(org: Org, target: Account) -> Account:
    """Serialise owner-count checks per org (the org row is the lock) and re-read the target."""
    Org.objects.select_for_update(no_key=True).filter(pk=org.pk).first()  # no_key: ARCHITECTURE.md, "org row locks"
    return Account.objects.select_for_update().get(pk=target.pk)


def _ensure_another_owner(org: Org, target: Account) -> None:
    others = scope_to_org(Account.objects.filter(role=Role.OWNER, is_active=True), org).exclude(pk=target.pk)
    if not others.exists():
        raise Conflict("An org must keep at least one active owner.", code="last_owner")


def change_role(
    *,
    org: Org,
    target: Account,
    role: str,
    actor: Account | None = None,
    audit_context: AuditContext | None = None,
) -> Account:
    """Set an org member's role. Superadmin is never grantable; the last owner cannot be demoted."""
    if role not in GRANTABLE_ROLES:
        raise InvalidRequest(
            f"role must be one of {', '.join(GRANTABLE_ROLES)}.", fields={"role": ["Not a grantable role."]}
        )
    with transaction.atomic():
        target = _lock_org_accounts(org, target)
        if target.role == role:
            return target
        if target.role == Role.OWNER:
            _ensure_another_owner(org, target)
        old_role, target.role = target.role, role
        target.save(update_fields=["role"])
        revoke_sessions(target)
        record_event(
            org=org,
            event_type=events.ACCOUNT_ROLE_CHANGED,
            outcome=Outcome.SUCCESS,
            actor=actor,
            context=audit_context,
            detail={"account_id": target.pk, "email": target.email, "old_role": old_role, "new_role": role},
        )
    return target


def deactivate_account(
    *, org: Org, target: Account, actor: Account | None = None, audit_context: AuditContext | None = None
) -> Account:
    """Offboard a member: they can no longer sign in and their sessions end. The last owner stays."""
    with transaction.atomic():
        target = _lock_org_accounts(org, target)
        if not target.is_active:
            return target
        if target.role == Role.OWNER:
            _ensure_another_owner(org, target)
        target.is_active = False
        target.save(update_fields=["is_active"])
        revoke_sessions(target)
        record_event(
            org=org,
            event_type=events.ACCOUNT_DEACTIVATED,
            outcome=Outcome.SUCCESS,
            actor=actor,
            context=audit_context,
            detail={"account_id": target.pk, "email": target.email, "role": target.role},
        )
    return target


def create_superadmin(*, email: str, password: str) -> Account:
    email = normalize_email(email)
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidRequest(
            "Enter a valid email address.", fields={"email": ["Enter a valid email address."]}
        ) from None
    errors = _password_errors(password, email)
    if errors:
        raise InvalidRequest("The password is too weak: " + " ".join(errors), fields={"password": errors})
    if Account.objects.filter(email=email).exists():
        raise Conflict("An account with this email already exists.", code="email_taken")
    with transaction.atomic():
        account = Account.objects.create_account(email=email, password=password, org=None, role=Role.SUPERADMIN)
        record_event(
            org=None,
            event_type=events.ACCOUNT_SUPERADMIN_CREATED,
            outcome=Outcome.SUCCESS,
            detail={"account_id": account.pk, "email": account.email},
        )
    return account
