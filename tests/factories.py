import functools

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

DEFAULT_PASSWORD = "correct-horse-battery-staple"


@functools.cache
def hashed(password: str) -> str:
    """Hash each test password once: the real hasher is slow on purpose."""
    return make_password(password)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.password = hashed(extracted or DEFAULT_PASSWORD)
        if create:
            self.save(update_fields=["password"])
