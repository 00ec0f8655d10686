"""The Apicbase supplier-ordering simulator (OAuth2, purchase orders, signed webhooks)."""
