/* main.c — the dsup-node program: everything is in dsup_main (cli.c). */
#include "dsup.h"

int main(int argc, char **argv) { return dsup_main(argc, argv); }
