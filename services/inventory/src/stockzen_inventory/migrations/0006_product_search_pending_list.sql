-- The search index's pending list kept short. GIN gathers new entries in an unsorted pending list
-- (fastupdate) and merges them into the index later, and every search reads all of that list. At
-- the default limit (gin_pending_list_limit, 4 MB) a burst of new products left hundreds of pages
-- there, and the planner rightly preferred reading the tenant's products to reading them: a search
-- that found nothing read all 20,000 products of its tenant again. At 256 kB the list is merged
-- every few hundred products written (about 70 us a product, against 300 us with no pending list
-- at all, fastupdate off) and a search reads at most 32 pages of it. Safe to run again.

ALTER INDEX products_search SET (gin_pending_list_limit = 256);
