"""adaptive_control package."""
