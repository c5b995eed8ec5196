"""Lab publishers: broken variants and deploy versions, declared only by scenarios and tests."""
