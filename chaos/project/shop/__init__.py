"""Shop: categories, products, orders, tags; the big tables (8,000 products, 32,000 orders)."""
