"""Metering: usage events per workspace and the reports over them."""
