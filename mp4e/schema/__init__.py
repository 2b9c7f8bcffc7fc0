"""The canonical GraphQL schema. Each domain module contributes query, mutation and
subscription types, merged here."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from mp4e.schema.exports import ExportMutation
from mp4e.schema.metadata import MetadataMutation, MetadataQuery
from mp4e.schema.processing import ProcessingMutation, ProcessingQuery
from mp4e.schema.scalars import JSON, JSON_SCALAR
from mp4e.schema.subscriptions import JobSubscription
from mp4e.schema.surfaces import SurfaceMutation, SurfaceQuery
from mp4e.schema.videos import VideoMutation, VideoQuery

Query = merge_types("Query", (VideoQuery, MetadataQuery, ProcessingQuery, SurfaceQuery))
Mutation = merge_types(
    "Mutation",
    (VideoMutation, ExportMutation, MetadataMutation, ProcessingMutation, SurfaceMutation),
)
Subscription = merge_types("Subscription", (JobSubscription,))

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(scalar_map={JSON: JSON_SCALAR}),
)
