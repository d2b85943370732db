from django.urls import path

from keyward.accounts import api

urlpatterns = [
    path("signup", api.SignupView.as_view(), name="auth-signup"),
    path("signup/confirm", api.SignupConfirmView.as_view(), name="auth-signup-confirm"),
    path("login", api.LoginView.as_view(), name="auth-login"),
    path("logout", api.LogoutView.as_view(), name="auth-logout"),
    path("me", api.MeView.as_view(), name="auth-me"),
    path("2fa/setup", api.TotpSetupView.as_view(), name="auth-2fa-setup"),
    path("2fa/enable", api.TotpEnableView.as_view(), name="auth-2fa-enable"),
    path("2fa/disable", api.TotpDisableView.as_view(), name="auth-2fa-disable"),
]
