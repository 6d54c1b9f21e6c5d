/** The wire shapes the app uses, named from the types generated out of the gateway's OpenAPI. */
import type { components } from "./schema";

type Schemas = components["schemas"];

export type Code = Schemas["Code"];
export type ItemResult = Schemas["ItemResult"];
export type SyncResponse = Schemas["SyncResponse"];
export type ProductState = Schemas["ProductState"];
export type ProductView = Schemas["ProductView"];
export type StockMovementState = Schemas["StockMovementState"];
export type MovementPage = Schemas["MovementPage"];
export type ChangeFeedPage = Schemas["ChangeFeedPage"];
export type SnapshotPage = Schemas["SnapshotPage"];
export type Change = Schemas["Change"];
export type ErrorBody = Schemas["ErrorBody"];
export type ProductCreate = Schemas["ProductCreate"];
export type ProductPatch = Schemas["ProductPatch"];
export type StockMovementCreate = Schemas["StockMovementCreate"];
export type MovementKind = Schemas["MovementKind"];
export type CreateProduct = Schemas["CreateProduct"];
export type UpdateProduct = Schemas["UpdateProduct"];
export type DeleteProduct = Schemas["DeleteProduct"];
export type RecordStockMovement = Schemas["RecordStockMovement"];

/** Any operation the app sends in ``POST /api/sync``. */
export type Operation = CreateProduct | UpdateProduct | DeleteProduct | RecordStockMovement;
