"""Integrations with training frameworks, each in its own module with its own optional dependency.

Nothing is imported here, so `import evalharness.integrations` never pulls in a training framework:
`from evalharness.integrations.composer import ICLEvaluator` needs `pip install 'evalharness[composer]'`.
"""
