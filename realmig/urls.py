"""No views: system checks only need a URLconf."""

urlpatterns: list[object] = []
