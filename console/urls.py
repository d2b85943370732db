"""Dashboard routes arrive with the console issue."""

urlpatterns: list = []
