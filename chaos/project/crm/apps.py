from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "chaos.project.crm"
    label = "crm"
