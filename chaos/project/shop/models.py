"""The shop's final state, which its migrations build step by step."""

from django.db import models
from django.db.models import Q


class Category(models.Model):
    name = models.CharField(max_length=100, unique=True)


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Product(models.Model):
    category = models.ForeignKey(Category, models.PROTECT, related_name="products")
    sku = models.CharField(max_length=32)
    title = models.TextField()
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock = models.IntegerField(default=0)
    weight_grams = models.IntegerField(default=0)
    tags = models.ManyToManyField(Tag, related_name="products")

    class Meta:
        indexes = (models.Index(fields=["sku"], name="shop_product_sku_idx"),)
        constraints = (
            models.CheckConstraint(condition=Q(price__gte=0), name="shop_product_price_gte_0"),
            models.UniqueConstraint(fields=["category", "sku"], name="shop_product_cat_sku_uniq"),
        )


class Order(models.Model):
    product = models.ForeignKey(Product, models.CASCADE, related_name="orders")
    customer = models.ForeignKey("crm.Customer", models.SET_NULL, null=True, related_name="orders")
    quantity = models.BigIntegerField()
    note = models.TextField(default="")
    day = models.DateField()

    class Meta:
        indexes = (models.Index(fields=["product", "day"], name="shop_order_product_day_idx"),)
