from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "chaos.project.shop"
    label = "shop"
