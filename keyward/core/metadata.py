"""What OPTIONS answers: the view's name, description and media types; /v1/schema documents the rest.

DRF's default also lists each writable method's fields, which builds serializers and objects the
caller never asked for (it called `get_object()` on /v1/approvals/webhook, a route without an id: 500).
"""

from rest_framework.metadata import SimpleMetadata


class DescriptionOnlyMetadata(SimpleMetadata):
    def determine_actions(self, request, view) -> dict:
        return {}
