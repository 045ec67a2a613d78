"""The CRM's final state, which its migrations build step by step."""

from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=100)
    email = models.CharField(max_length=254)
    favourite_product = models.ForeignKey(
        "shop.Product", models.SET_NULL, null=True, related_name="fans"
    )

    class Meta:
        db_table = "crm_client"


class Interaction(models.Model):
    customer = models.ForeignKey(Customer, models.CASCADE, related_name="notes")
    body = models.TextField()
