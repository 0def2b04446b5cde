"""Books, each owned by a user."""

from sqlmodel import Field, SQLModel


class Book(SQLModel, table=True):
    """A book on a user's shelf."""

    __tablename__ = "book"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=300)
    author: str = Field(max_length=200)
    owner_id: int = Field(foreign_key="user.id", index=True)
