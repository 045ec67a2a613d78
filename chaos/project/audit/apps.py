from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "chaos.project.audit"
    label = "audit"
