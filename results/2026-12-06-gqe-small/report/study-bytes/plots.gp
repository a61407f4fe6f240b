D = ARG0[1:strlen(ARG0) - strlen('plots.gp')]
set terminal pngcairo size 1000,604 noenhanced font ',10'
set output D.'curve1.png'
set key below left maxrows 2
set xlabel 'step'
set grid
plot D.'curve1_g1.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#1f77b4' notitle, \
     D.'curve1_g1.dat' using 1:2 with linespoints pi 3 ps 0.8 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'attention=gqa,variant=gqe (3 seeds)', \
     D.'curve1_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'curve1_g2.dat' using 1:2 with linespoints pi 3 ps 0.8 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,variant=gqe (3 seeds)', \
     D.'curve1_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'curve1_g3.dat' using 1:2 with linespoints pi 3 ps 0.8 lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,variant=hard_concat (3 seeds)', \
     D.'curve1_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'curve1_g4.dat' using 1:2 with linespoints pi 3 ps 0.8 lw 3 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,variant=weighted_concat (3 seeds) [best]'
unset output
reset

set terminal pngcairo size 1000,604 noenhanced font ',10'
set output D.'curve2.png'
set key below left maxrows 2
set xlabel 'step'
set grid
plot D.'curve2_g1.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#1f77b4' notitle, \
     D.'curve2_g1.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'attention=gqa,variant=gqe (3 seeds)', \
     D.'curve2_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'curve2_g2.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,variant=gqe (3 seeds)', \
     D.'curve2_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'curve2_g3.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,variant=hard_concat (3 seeds)', \
     D.'curve2_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'curve2_g4.dat' using 1:2 with linespoints pi 1 ps 0.8 lw 3 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,variant=weighted_concat (3 seeds) [best]'
unset output
reset

set terminal pngcairo size 900,520 noenhanced font ',10'
set output D.'axis1.png'
set key outside right top
set xlabel 'set key outside right top?'
set xrange [0.4:2.600000]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics ('gqa' 1, 'gqe' 2)
set grid ytics
plot D.'axis1_s1.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'variant=gqe', \
     D.'axis1_s2.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'variant=hard_concat', \
     D.'axis1_s3.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'variant=weighted_concat', \
     D.'axis1_best.dat' using 1:2 with points pt 6 ps 3.5 lw 2 lc rgb 'black' title 'best'
unset output
reset

set terminal pngcairo size 900,520 noenhanced font ',10'
set output D.'axis2.png'
set key outside right top
set xlabel 'set key outside right top?'
set xrange [0.4:3.600000]
set offsets 0, 0, graph 0.08, graph 0.08
set xtics ('gqe' 1, 'hard_concat' 2, 'weighted_concat' 3)
set grid ytics
plot D.'axis2_s1.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#1f77b4' dt 1 pt 7 title 'attention=gqa', \
     D.'axis2_s2.dat' using 1:2:3:4 with yerrorbars ps 1.4 lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe', \
     D.'axis2_best.dat' using 1:2 with points pt 6 ps 3.5 lw 2 lc rgb 'black' title 'best'
unset output
reset

set terminal pngcairo size 1480,874 noenhanced font ',10'
set output D.'usage_g2.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:1.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('400' 1)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,4
set title 'layer 0'
plot D.'usage_g2_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g2_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 2'
plot D.'usage_g2_l2.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 3'
plot D.'usage_g2_l3.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 1480,874 noenhanced font ',10'
set output D.'usage_g3.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:1.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('400' 1)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,4
set title 'layer 0'
plot D.'usage_g3_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g3_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 2'
plot D.'usage_g3_l2.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 3'
plot D.'usage_g3_l3.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 1480,874 noenhanced font ',10'
set output D.'usage_g4.png'
set xlabel 'step'
set cbrange [0:1]
set cblabel 'share of the group'
set palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')
set xrange [0.5:1.500000]
set yrange [50.500000:-0.5] reverse
set xtics ('400' 1)
set ytics ('s1 g0e0' 0, 's1 g1e0' 2, 's1 g2e0' 4, 's1 g3e0' 6, 's1 g4e0' 8, 's1 g5e0' 10, 's1 g6e0' 12, 's1 g7e0' 14, 's2 g0e0' 17, 's2 g1e0' 19, 's2 g2e0' 21, 's2 g3e0' 23, 's2 g4e0' 25, 's2 g5e0' 27, 's2 g6e0' 29, 's2 g7e0' 31, 's3 g0e0' 34, 's3 g1e0' 36, 's3 g2e0' 38, 's3 g3e0' 40, 's3 g4e0' 42, 's3 g5e0' 44, 's3 g6e0' 46, 's3 g7e0' 48) font ',7'
set multiplot layout 1,4
set title 'layer 0'
plot D.'usage_g4_l0.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 1'
plot D.'usage_g4_l1.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 2'
plot D.'usage_g4_l2.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
set title 'layer 3'
plot D.'usage_g4_l3.dat' using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette notitle
unset multiplot
unset output
reset

set terminal pngcairo size 1600,680 noenhanced font ',10'
set output D.'routing_entropy.png'
set xlabel 'step'
set grid
set multiplot layout 2,4
set title 'layer 0'
plot D.'routing_entropy_l0_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_entropy_l0_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_entropy_l0_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_entropy_l0_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_entropy_l0_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_entropy_l0_g4.dat' using 1:2 with linespoints lw 3 lc rgb '#ff7f0e' dt 4 pt 11 notitle
set title 'layer 1'
plot D.'routing_entropy_l1_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_entropy_l1_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_entropy_l1_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_entropy_l1_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_entropy_l1_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_entropy_l1_g4.dat' using 1:2 with linespoints lw 3 lc rgb '#ff7f0e' dt 4 pt 11 notitle
set title 'layer 2'
plot D.'routing_entropy_l2_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_entropy_l2_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_entropy_l2_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_entropy_l2_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_entropy_l2_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_entropy_l2_g4.dat' using 1:2 with linespoints lw 3 lc rgb '#ff7f0e' dt 4 pt 11 notitle
set title 'layer 3'
plot D.'routing_entropy_l3_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_entropy_l3_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_entropy_l3_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_entropy_l3_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_entropy_l3_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_entropy_l3_g4.dat' using 1:2 with linespoints lw 3 lc rgb '#ff7f0e' dt 4 pt 11 notitle
unset title
unset border
unset tics
unset xlabel
unset grid
set yrange [0:1]
set key center center font ',9' samplen 4
plot NaN with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,variant=hard_concat', \
     NaN with linespoints lw 3 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,variant=weighted_concat [best]'
unset multiplot
unset output
reset

set terminal pngcairo size 1600,680 noenhanced font ',10'
set output D.'routing_cv.png'
set xlabel 'step'
set grid
set multiplot layout 2,4
set title 'layer 0'
plot D.'routing_cv_l0_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_cv_l0_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_cv_l0_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_cv_l0_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_cv_l0_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_cv_l0_g4.dat' using 1:2 with linespoints lw 3 lc rgb '#ff7f0e' dt 4 pt 11 notitle
set title 'layer 1'
plot D.'routing_cv_l1_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_cv_l1_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_cv_l1_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_cv_l1_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_cv_l1_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_cv_l1_g4.dat' using 1:2 with linespoints lw 3 lc rgb '#ff7f0e' dt 4 pt 11 notitle
set title 'layer 2'
plot D.'routing_cv_l2_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_cv_l2_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_cv_l2_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_cv_l2_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_cv_l2_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_cv_l2_g4.dat' using 1:2 with linespoints lw 3 lc rgb '#ff7f0e' dt 4 pt 11 notitle
set title 'layer 3'
plot D.'routing_cv_l3_g2.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#d62728' notitle, \
     D.'routing_cv_l3_g2.dat' using 1:2 with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 notitle, \
     D.'routing_cv_l3_g3.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#2ca02c' notitle, \
     D.'routing_cv_l3_g3.dat' using 1:2 with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 notitle, \
     D.'routing_cv_l3_g4.dat' using 1:3:4 with filledcurves fs transparent solid 0.12 noborder lc rgb '#ff7f0e' notitle, \
     D.'routing_cv_l3_g4.dat' using 1:2 with linespoints lw 3 lc rgb '#ff7f0e' dt 4 pt 11 notitle
unset title
unset border
unset tics
unset xlabel
unset grid
set yrange [0:1]
set key center center font ',9' samplen 4
plot NaN with linespoints lw 1.5 lc rgb '#d62728' dt 2 pt 5 title 'attention=gqe,variant=gqe', \
     NaN with linespoints lw 1.5 lc rgb '#2ca02c' dt 3 pt 9 title 'attention=gqe,variant=hard_concat', \
     NaN with linespoints lw 3 lc rgb '#ff7f0e' dt 4 pt 11 title 'attention=gqe,variant=weighted_concat [best]'
unset multiplot
unset output
reset
