#include "bind.h"
void gqe_lua_open_eval(lua_State *L) { (void)L; }
