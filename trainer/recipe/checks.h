// The recipe's value checks (internal to trainer/recipe/): every key against its constraint in
// the schema, then the rules that relate two or more keys, the parallel layout's among them
// (layout.h). Messages name the key and where its value came from (origins.h).
#pragma once

#include "trainer/recipe.h"
#include "trainer/recipe/origins.h"

namespace tessera::trainer::recipe_detail {

// Throws RecipeError "<origin of the key>[, <other --set origins>]: <key>: <what>[ (line L,
// column C)]" for the first problem found.
void check_recipe(const Recipe& recipe, const Origins& origins);

}  // namespace tessera::trainer::recipe_detail
